"""PyTorch + PEFT on the CPU, timed with the protocol of `lorafuse bench-speed`, so the two can run
side by side on one machine (scripts/bench-torch runs both and prints the ratios).

    python bench_torch.py MODEL_DIR --threads 1 [--seq 64] [--infer-batches 8] [--train-steps 5]

- inference: forward + mean pool of `infer_batches` batches of 32 sequences of exactly `seq`
  tokens ([CLS] ... [SEP], ids from the same generator as bench-speed's), after one warm-up batch,
  eval mode, torch.inference_mode, fp32 (sentences/s);
- LoRA training: r = 8, alpha = 16, no LoRA dropout, on query and value (PEFT), a Linear(384, 2)
  head with dropout 0.1 on the mean-pooled output, AdamW (lr 1e-4), batch 32, sequence `seq`,
  train mode (the encoder's dropout on), 2 warm-up steps then `train_steps` timed ones; a step is
  zero_grad + forward + cross-entropy + backward + optimiser step (median step time, examples/s).

What it leaves out: tokenisation (both sides time pre-tokenised batches) and the GPU.
Prints one JSON object on the last line.
"""
import argparse
import json
import platform
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

MASK64 = (1 << 64) - 1


def synthetic_batch(seed, t, b=32):
    """bench-speed's synthetic_batch: the same ids for the same seed."""
    s = seed
    ids = []
    for _ in range(b):
        row = [101]
        for _ in range(1, t - 1):
            s = (s * 6364136223846793005 + 1442695040888963407) & MASK64
            row.append(1996 + ((s >> 33) % 20000))
        row.append(102)
        ids.append(row)
    ids = torch.tensor(ids, dtype=torch.long)
    return ids, torch.ones_like(ids)


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def inference(model_dir, args):
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        ids, mask = synthetic_batch(0, args.seq)
        mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        batches = [synthetic_batch(i + 1, args.seq) for i in range(args.infer_batches)]
        t0 = time.perf_counter()
        for ids, mask in batches:
            mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        elapsed = time.perf_counter() - t0
    return args.infer_batches * 32 / elapsed


def training(model_dir, args):
    torch.manual_seed(1)
    base = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"])
    )
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(base.config.hidden_size, 2))
    model.train()
    head.train()
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    targets = torch.tensor([i % 2 for i in range(32)])
    times = []
    for step in range(args.train_steps + 2):
        ids, mask = synthetic_batch(100 + step, args.seq)
        t0 = time.perf_counter()
        opt.zero_grad()
        pooled = mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        loss = torch.nn.functional.cross_entropy(head(pooled), targets)
        loss.backward()
        opt.step()
        if step >= 2:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return median


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--infer-batches", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    infer = inference(args.model_dir, args)
    step = training(args.model_dir, args)
    import peft
    import transformers

    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "seq": args.seq,
                "inference_sentences_per_s": infer,
                "lora_train_examples_per_s": 32 / step,
                "train_step_seconds_median": step,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "peft": peft.__version__,
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
