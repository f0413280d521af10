"""Chapter 02: train a byte-level BPE on tinyshakespeare, look at what it learned, compare
compression across vocabulary sizes, and check GPT-2 parity with tiktoken.

    python -m tinytorch.course run 2            # whole text, vocab up to 4096 (~1 minute)
    python -m tinytorch.course run 2 --quick    # 200 kB, vocab up to 1024 (seconds)

Writes compression.png, merges.txt and summary.json to --out (default chapters/02_tokenizer/out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tinytorch.data import dataset_path  # noqa: E402
from tinytorch.text import BPETokenizer, CharTokenizer, GPT2Tokenizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    if args.quick:
        text = text[:200_000]
    n = int(0.9 * len(text))
    train, val = text[:n], text[n:]
    sizes = [256, 320, 512, 1024] if args.quick else [256, 320, 512, 1024, 2048, 4096]
    print(
        f"tinyshakespeare: {len(text):,} characters ({len(train):,} train / {len(val):,} held out)"
    )

    t0 = time.perf_counter()
    tok = BPETokenizer.train(train, vocab_size=max(sizes))
    print(f"trained {len(tok.merges)} merges in {time.perf_counter() - t0:.1f} s")
    lines = []
    for i, (a, b) in enumerate(tok.merges[:20]):
        new = 256 + i
        lines.append(f"{new:5d} = {tok.vocab[a]!r} + {tok.vocab[b]!r} -> {tok.vocab[new]!r}")
    print("the first merges:\n  " + "\n  ".join(lines[:12]))
    (out / "merges.txt").write_text(
        "\n".join(f"{256 + i:5d} {tok.vocab[256 + i]!r}" for i in range(len(tok.merges))) + "\n"
    )

    # Compression on held-out text: a tokenizer with the first V-256 merges is the tokenizer
    # we would have trained with vocab_size=V (training is greedy, so prefixes agree).
    val_bytes = len(val.encode("utf-8"))
    chars = CharTokenizer.from_text(text)
    rows = [
        {
            "tokenizer": "characters",
            "vocab": chars.vocab_size,
            "tokens": len(chars.encode(val)),
            "bytes_per_token": val_bytes / len(val),
        }
    ]
    for v in sizes:
        sub = BPETokenizer(tok.merges[: v - 256])
        k = len(sub.encode(val))
        rows.append(
            {"tokenizer": f"BPE {v}", "vocab": v, "tokens": k, "bytes_per_token": val_bytes / k}
        )
    try:
        gpt2 = GPT2Tokenizer.from_files(dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab"))
        k = len(gpt2.encode_ordinary(val))
        rows.append(
            {
                "tokenizer": "GPT-2",
                "vocab": gpt2.vocab_size,
                "tokens": k,
                "bytes_per_token": val_bytes / k,
            }
        )
    except (FileNotFoundError, OSError) as e:
        gpt2 = None
        print(f"GPT-2 files not available ({e}); skipping the GPT-2 comparison")
    print("\ncompression on the held-out 10% (bytes per token, higher = shorter sequences):")
    for r in rows:
        print(
            f"  {r['tokenizer']:<11} vocab {r['vocab']:>6}  {r['tokens']:>8} tokens  "
            f"{r['bytes_per_token']:.2f} bytes/token"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bpe = [r for r in rows if r["tokenizer"].startswith("BPE")]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [r["vocab"] for r in bpe],
        [r["bytes_per_token"] for r in bpe],
        "o-",
        label="BPE trained on tinyshakespeare",
    )
    if gpt2 is not None:
        ax.axhline(
            rows[-1]["bytes_per_token"],
            color="gray",
            ls="--",
            label="GPT-2 (50,257, trained on web text)",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size")
    ax.set_ylabel("bytes per token (held-out text)")
    ax.set_title("Compression vs vocabulary size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "compression.png", dpi=120)
    print(f"\nwrote {out / 'compression.png'}")

    parity = None
    if gpt2 is not None:
        sample = "Hello world! 你好, naïve café 😀 <|endoftext|> It's 2024.\n\n  indented"
        ids = gpt2.encode(sample, allowed_special="all")
        print(f"\nGPT-2: {sample!r}\n  -> {ids}")
        print(f"  round trip exact: {gpt2.decode(ids) == sample}")
        try:
            import tiktoken
            from tiktoken.load import data_gym_to_mergeable_bpe_ranks

            from tinytorch.text import GPT2_PATTERN

            ranks = data_gym_to_mergeable_bpe_ranks(
                str(dataset_path("gpt2-vocab")), str(dataset_path("gpt2-encoder"))
            )
            enc = tiktoken.Encoding(
                "gpt2",
                pat_str=GPT2_PATTERN,
                mergeable_ranks=ranks,
                special_tokens={"<|endoftext|>": 50256},
            )
            check = val if args.quick else text
            parity = gpt2.encode_ordinary(check) == enc.encode_ordinary(check)
            print(f"  same ids as tiktoken on {len(check):,} characters: {parity}")
        except ImportError:
            print("  (tiktoken not installed: pip install tiktoken to compare)")
    summary = {"merges_first_20": lines, "compression": rows, "tiktoken_parity": parity}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out / 'summary.json'} and {out / 'merges.txt'}")


if __name__ == "__main__":
    main()
