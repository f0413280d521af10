"""Chapter 02: train a byte-level BPE on tinyshakespeare, look at what it learned, compare
compression across vocabulary sizes, batch some text, and check GPT-2 parity with tiktoken.

    python -m tinytorch.course run 2            # whole text, vocab up to 4096 (under a minute)
    python -m tinytorch.course run 2 --quick    # 200 kB, vocab up to 1024 (seconds)
    python -m tinytorch.course run 2 --record   # also write benchmarks/results/tokenizer_ch02_*

Writes compression.png, merges.txt, shakespeare_bpe.json and summary.json to --out
(default chapters/02_tokenizer/out).
"""

from __future__ import annotations

import json
import time

import matplotlib.pyplot as plt
import regex

from tinytorch.bench import record
from tinytorch.chapter import chapter_args
from tinytorch.data import dataset_path
from tinytorch.text import (
    GPT2_PATTERN,
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    chunk_counts,
    encode_batch,
    tiktoken_encoding,
    train_merges,
    train_merges_reference,
)


def show(tok, ids):
    """The pieces of an encoding, e.g. 'First| Citizen|:' (bytes that are not whole
    characters shown as escapes)."""
    return "|".join(tok.decode_bytes([i]).decode("utf-8", "backslashreplace") for i in ids)


def compare_trainers(text, num_merges):
    """The incremental trainer against the straightforward one: same merges, how much faster."""
    counts = chunk_counts(text)
    t0 = time.perf_counter()
    fast = train_merges(counts, num_merges)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = train_merges_reference(counts, num_merges)
    t_ref = time.perf_counter() - t0
    print(
        f"\n{num_merges} merges on {len(text):,} characters ({len(counts):,} distinct chunks): "
        f"incremental {t_fast:.2f} s, straightforward {t_ref:.2f} s "
        f"({t_ref / t_fast:.0f}x); same merges: {fast == ref}"
    )
    if fast != ref:
        raise SystemExit("the two trainers disagree: see tests/test_ch02_bpe.py")
    return {"chars": len(text), "merges": num_merges, "fast_s": t_fast, "reference_s": t_ref}


def plot(rows, path):
    bpe = [r for r in rows if r["tokenizer"].startswith("BPE")]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [r["vocab"] for r in bpe],
        [r["bytes_per_token"] for r in bpe],
        "o-",
        label="BPE trained on 90% of the text",
    )
    for r in rows:
        if r["tokenizer"] == "GPT-2":
            ax.axhline(
                r["bytes_per_token"], color="gray", ls="--", label="GPT-2 (50,257 tokens, web text)"
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size")
    ax.set_ylabel("bytes per token (held-out text)")
    ax.set_title("Compression vs vocabulary size (tinyshakespeare)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    args = chapter_args(__file__, __doc__.split("\n")[0]).parse_args()
    out = args.out

    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    if args.quick:
        text = text[:200_000]
    n = int(0.9 * len(text))
    train, val = text[:n], text[n:]
    sizes = [256, 320, 512, 1024] if args.quick else [256, 320, 512, 1024, 2048, 4096]
    print(
        f"tinyshakespeare: {len(text):,} characters ({len(train):,} train / {len(val):,} held out)"
    )

    chunks = regex.findall(GPT2_PATTERN, text)
    stats = {"characters": len(text), "chunks": len(chunks), "distinct_chunks": len(set(chunks))}
    print(
        f"GPT-2's pattern splits it into {len(chunks):,} chunks, {len(set(chunks)):,} distinct: "
        f"{chunks[:8]}"
    )

    chars = CharTokenizer.from_text(text)
    line = text.split("\n")[0]
    print(f"\ncharacters: vocab {chars.vocab_size}; {line!r} -> {chars.encode(line)}")

    t0 = time.perf_counter()
    tok = BPETokenizer.train(train, vocab_size=max(sizes))
    print(f"\ntrained {len(tok.merges)} BPE merges in {time.perf_counter() - t0:.1f} s")
    lines = [
        f"{256 + i:5d} = {tok.vocab[a]!r} + {tok.vocab[b]!r} -> {tok.vocab[256 + i]!r}"
        for i, (a, b) in enumerate(tok.merges[:20])
    ]
    print("the first merges:\n  " + "\n  ".join(lines[:12]))
    (out / "merges.txt").write_text(
        "".join(f"{256 + i:5d} {tok.vocab[256 + i]!r}\n" for i in range(len(tok.merges)))
    )
    trainers = compare_trainers(train[:50_000] if args.quick else train, 100 if args.quick else 200)

    # A tokenizer with the first V - 256 merges is exactly the one training with vocab_size=V
    # would give (training is greedy: the first merges do not depend on how many follow).
    sample = "Wherefore art thou Romeo? Unconstitutionally!"
    print(f"\n{sample!r} at growing vocabulary sizes:")
    val_bytes = len(val.encode("utf-8"))
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
        ids = sub.encode(sample)
        print(f"  {v:5d}: {len(ids):3d} tokens  {show(sub, ids)}")
        k = len(sub.encode(val))
        rows.append(
            {"tokenizer": f"BPE {v}", "vocab": v, "tokens": k, "bytes_per_token": val_bytes / k}
        )
    gpt2 = GPT2Tokenizer.from_data_dir()
    k = len(gpt2.encode_ordinary(val))
    rows.append(
        {
            "tokenizer": "GPT-2",
            "vocab": gpt2.vocab_size,
            "tokens": k,
            "bytes_per_token": val_bytes / k,
        }
    )
    print("\ncompression on the held-out 10% (bytes per token; higher = shorter sequences):")
    for r in rows:
        print(
            f"  {r['tokenizer']:<11} vocab {r['vocab']:>6}  {r['tokens']:>8} tokens  "
            f"{r['bytes_per_token']:.2f} bytes/token"
        )
    plot(rows, out / "compression.png")
    print(f"wrote {out / 'compression.png'}")

    path = out / "shakespeare_bpe.json"
    tok.save(path)
    back = BPETokenizer.load(path)
    assert back.encode(val) == tok.encode(val)
    print(f"\nsaved and reloaded {path} ({path.stat().st_size:,} bytes): same encoding")

    first = sorted([s for s in val.split("\n")[:40] if len(s) >= 8], key=len)
    batch_lines = [first[0], first[len(first) // 2], first[-1]]  # short, medium, long
    batch = encode_batch(tok, batch_lines, max_length=10, truncation=True, padding_side="left")
    print(f"\na batch of {len(batch_lines)} lines, max_length=10, truncated, padded on the left:")
    for s, ids, m in zip(batch_lines, batch["input_ids"], batch["attention_mask"]):
        print(f"  {s[:30]!r:34} ids {ids.tolist()}  mask {m.tolist()}")

    sample = "Hello world! 你好, naïve café 😀 <|endoftext|> It's 2024.\n\n  indented"
    ids = gpt2.encode(sample, allowed_special="all")
    print(f"\nGPT-2: {sample!r}\n  -> {ids}\n  round trip exact: {gpt2.decode(ids) == sample}")
    parity = None
    try:
        tik = tiktoken_encoding(dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab"))
        parity = gpt2.encode_ordinary(text) == tik.encode_ordinary(text)
        same = ids == tik.encode(sample, allowed_special="all")
        print(
            f"  same ids as tiktoken on the sample: {same}; on all {len(text):,} characters:",
            parity,
        )
    except ImportError:
        print("  (pip install tiktoken to compare with OpenAI's implementation)")

    summary = {
        "mode": "quick" if args.quick else "default",
        "text": stats,
        "merges_first_20": lines,
        "compression": rows,
        "trainers": trainers,
        "tiktoken_parity": parity,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"wrote {out / 'summary.json'}, {out / 'merges.txt'}")
    if args.record:
        record_run(summary, out / "compression.png")


def record_run(summary, png):
    """Keep this run's figures (quoted in the chapter README) under benchmarks/results/."""
    columns = ["tokenizer", "vocab", "tokens", "bytes_per_token"]
    t = summary["trainers"]
    notes = (
        "Compression of the held-out last 10% of tinyshakespeare; BPE trained on the first 90% "
        f"({summary['mode']} run). Trainers: {t['merges']} merges on {t['chars']:,} characters, "
        f"incremental {t['fast_s']:.2f} s, straightforward {t['reference_s']:.2f} s. "
        f"GPT-2 ids equal tiktoken's on the whole text: {summary['tiktoken_parity']}. Text: "
        f"{summary['text']['characters']:,} characters, {summary['text']['chunks']:,} chunks "
        f"({summary['text']['distinct_chunks']:,} distinct) with GPT-2's pattern."
    )
    record(
        "tokenizer_ch02",
        "cpu",
        columns,
        summary["compression"],
        notes=notes,
        extra=summary,
        figures=[png],
    )


if __name__ == "__main__":
    main()
