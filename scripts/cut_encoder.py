#!/usr/bin/env python3
"""Writes a smaller copy of a BERT-family sentence encoder, as a second model configuration for tests
and for trying the page's "bring your own encoder": the first N layers of SRC's encoder, its
embeddings and tokenizer, weights in F32 or F16, and sentence-transformers' modules.json and
1_Pooling/config.json choosing the pooling (mean, cls, max) and whether embeddings are normalised.

    python3 scripts/cut_encoder.py SRC DST [--layers 3] [--pooling cls] [--dtype f16] [--no-normalize]

SRC holds config.json, model.safetensors (F32) and tokenizer.json (e.g. public/models/all-MiniLM-L6-v2).
Standard library only: safetensors is an 8-byte header length, a JSON header and raw little-endian
data; F32 → F16 uses struct's IEEE half format (round to nearest even, like the `half` crate).
The output equals SRC's model up to layer N, so a test can recompute its output by hand from SRC's
hidden states. The pooler is dropped (lorafuse never loads it)."""
import argparse
import json
import shutil
import struct
import sys
from pathlib import Path


def read_safetensors(path: Path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    return header, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--pooling", choices=["mean", "cls", "max"], default="cls")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    ap.add_argument("--no-normalize", action="store_true")
    a = ap.parse_args()

    config = json.loads((a.src / "config.json").read_text())
    if not 1 <= a.layers <= config["num_hidden_layers"]:
        print(f"--layers must be 1..{config['num_hidden_layers']}", file=sys.stderr)
        return 2
    header, data = read_safetensors(a.src / "model.safetensors")

    def keep(name: str) -> bool:
        name = name.removeprefix("bert.")
        if name.startswith("embeddings."):
            return True
        if name.startswith("encoder.layer."):
            return int(name.split(".")[2]) < a.layers
        return False

    out_header, chunks, offset = {}, [], 0
    for name in sorted(k for k in header if k != "__metadata__" and keep(k)):
        t = header[name]
        start, end = t["data_offsets"]
        blob, dtype = data[start:end], t["dtype"]
        if dtype == "F32" and a.dtype == "f16":  # integer buffers (position_ids) stay as they are
            n = len(blob) // 4
            blob, dtype = struct.pack(f"<{n}e", *struct.unpack(f"<{n}f", blob)), "F16"
        out_header[name] = {
            "dtype": dtype,
            "shape": t["shape"],
            "data_offsets": [offset, offset + len(blob)],
        }
        chunks.append(blob)
        offset += len(blob)
    out_header["__metadata__"] = {"format": "pt"}
    head = json.dumps(out_header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)

    a.dst.mkdir(parents=True, exist_ok=True)
    (a.dst / "1_Pooling").mkdir(exist_ok=True)
    with open(a.dst / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for c in chunks:
            f.write(c)
    config["num_hidden_layers"] = a.layers
    (a.dst / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copyfile(a.src / "tokenizer.json", a.dst / "tokenizer.json")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if not a.no_normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (a.dst / "modules.json").write_text(json.dumps(modules, indent=2))
    pooling = {
        "word_embedding_dimension": config["hidden_size"],
        "pooling_mode_cls_token": a.pooling == "cls",
        "pooling_mode_mean_tokens": a.pooling == "mean",
        "pooling_mode_max_tokens": a.pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (a.dst / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    size = (a.dst / "model.safetensors").stat().st_size
    print(f"{a.dst}: {a.layers} layers, {a.pooling} pooling, {'not ' if a.no_normalize else ''}normalised, "
          f"{a.dtype}, model.safetensors {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
