"""Loads a lorafuse task adapter with PEFT + transformers and predicts as the lorafuse page does.

    python load_adapter.py ADAPTER_DIR BASE_MODEL "a text" ["another text" ...]

ADAPTER_DIR is the unzipped adapter download: PEFT's adapter_config.json and
adapter_model.safetensors, lorafuse's head.safetensors and lorafuse_task.json. BASE_MODEL is the
encoder the adapter was trained on, a folder or a hub name (sentence-transformers/all-MiniLM-L6-v2).
Prints one JSON line per text: {"text", "label", "probabilities": {label: p}}.

The prediction: mean of the adapted encoder's last hidden states over the real tokens (128 at most),
then the head (a linear layer), then softmax(logits / temperature), the temperature being the one
fitted on the task's held-out examples (lorafuse_task.json). Needs torch, transformers, peft and
safetensors; scripts/interop runs this file against the lorafuse CLI.
"""
import json
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer


def load(adapter_dir, base_model):
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    encoder = PeftModel.from_pretrained(AutoModel.from_pretrained(base_model), adapter_dir).eval()
    head = load_file(f"{adapter_dir}/head.safetensors")
    with open(f"{adapter_dir}/lorafuse_task.json", encoding="utf-8") as f:
        meta = json.load(f)
    return tokenizer, encoder, head, meta


@torch.no_grad()
def predict(texts, tokenizer, encoder, head, meta):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    logits = pooled @ head["weight"].T + head["bias"]
    return torch.softmax(logits / meta["temperature"], dim=-1)


if __name__ == "__main__":
    adapter_dir, base_model, *texts = sys.argv[1:]
    tokenizer, encoder, head, meta = load(adapter_dir, base_model)
    for text, p in zip(texts, predict(texts, tokenizer, encoder, head, meta)):
        label = meta["labels"][int(p.argmax())]
        print(json.dumps({"text": text, "label": label, "probabilities": dict(zip(meta["labels"], p.tolist()))}))
