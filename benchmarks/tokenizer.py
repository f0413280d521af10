"""Tokenizer speed: GPT-2 encoding vs tiktoken, BPE training vs `tokenizers` and the reference.

Encode throughput: MB of UTF-8 input per second, one thread, on all of tinyshakespeare and of
WikiText-2 valid; GPT2Tokenizer against tiktoken's "gpt2" Encoding built from the same files.
Ours starts every run with an empty chunk cache (cold), so the cache only helps with chunks
repeated inside the text, as in a single real call. Warm-up, then the median of --repeat runs,
ours and tiktoken's interleaved so that the load of a shared machine hits both alike.

Training: tinyshakespeare, vocab 1024 and 4096: tinytorch's incremental trainer and the
`tokenizers` package's BpeTrainer (Rust, byte-level pre-tokenizer, RAYON_NUM_THREADS=1), each
the median of 3 runs, both times including pre-tokenization; and the straightforward reference
trainer (recounts every pair before each merge), run once, in full. --reference-max-merges N
runs only its first N merges and scales the time to the full count (reported as an estimate;
an overestimate, since its later merges see shorter chunks and are cheaper).

    python benchmarks/tokenizer.py [--repeat 7] [--reference-max-merges N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the `tokenizers` trainer: one thread too
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def median_times(fns, repeat, warmup=1):
    """Median wall time of each function. The runs are interleaved (a, b, b, a, a, b, ...), so
    a change in the machine's load affects both sides alike and their ratio stays fair."""
    times = [[] for _ in fns]
    for r in range(warmup + repeat):
        order = list(range(len(fns)))[:: 1 if r % 2 == 0 else -1]
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            if r >= warmup:
                times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def encode_rows(repeat):
    from tinytorch.data import dataset_path
    from tinytorch.text import GPT2Tokenizer, tiktoken_encoding

    ours = GPT2Tokenizer.from_data_dir()
    tik = tiktoken_encoding(dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab"))
    rows = []
    for name in ("tinyshakespeare", "wikitext2-valid"):
        text = dataset_path(name).read_text(encoding="utf-8")
        mb = len(text.encode("utf-8")) / 1e6
        assert ours.encode_ordinary(text) == tik.encode_ordinary(text), "ids differ"

        def ours_cold(text=text):
            ours._cache.clear()
            ours.encode_ordinary(text)

        t_ours, t_tik = median_times(
            [ours_cold, lambda text=text: tik.encode_ordinary(text)], repeat
        )
        print(f"encode {name}: tinytorch {mb / t_ours:.2f} MB/s, tiktoken {mb / t_tik:.2f} MB/s")
        rows.append(
            dict(
                task=f"GPT-2 encode, {name} ({mb:.2f} MB)",
                tinytorch_s=t_ours,
                reference="tiktoken (1 thread)",
                reference_s=t_tik,
                tinytorch_MB_per_s=mb / t_ours,
                reference_MB_per_s=mb / t_tik,
                ratio=t_tik / t_ours,
                target="ratio >= 0.2",
            )
        )
    return rows


def merge_set(merges, hf_format=False):
    """Merges as a set of (bytes, bytes), from our ids or from `tokenizers`' JSON strings."""
    from tinytorch.text import bytes_to_unicode

    if hf_format:
        to_byte = {c: b for b, c in bytes_to_unicode().items()}
        merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
        return {tuple(bytes(to_byte[c] for c in part) for part in m) for m in merges}
    vocab = {i: bytes([i]) for i in range(256)}
    for i, (a, b) in enumerate(merges):
        vocab[256 + i] = vocab[a] + vocab[b]
    return {(vocab[a], vocab[b]) for a, b in merges}


def train_rows(ref_max_merges):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from tinytorch.data import dataset_path
    from tinytorch.text import chunk_counts, train_merges, train_merges_reference

    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    rows = []
    for vocab in (1024, 4096):
        m = vocab - 256
        fast = {}

        def ours(fast=fast, m=m):
            fast["merges"] = train_merges(chunk_counts(text), m)

        def hf(vocab=vocab, fast=fast):
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            trainer = trainers.BpeTrainer(
                vocab_size=vocab,
                show_progress=False,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            )
            tok.train_from_iterator([text], trainer=trainer)
            fast["hf"] = json.loads(tok.to_str())["model"]["merges"]

        t_fast, t_hf = median_times([ours, hf], 3, warmup=0)
        same_set = merge_set(fast["merges"]) == merge_set(fast["hf"], hf_format=True)
        print(
            f"train vocab {vocab}: tinytorch {t_fast:.2f} s, tokenizers {t_hf:.2f} s; "
            f"same set of merges: {same_set}"
        )

        done = m if ref_max_merges is None else min(m, ref_max_merges)
        t0 = time.perf_counter()
        ref = train_merges_reference(chunk_counts(text), done)
        t_ref = (time.perf_counter() - t0) * m / done
        assert ref == fast["merges"][:done], "the two trainers learned different merges"
        note = "" if done == m else f", estimated from its first {done} merges"
        print(f"train vocab {vocab}: reference trainer {t_ref:.1f} s{note}")
        common = dict(task=f"BPE train, tinyshakespeare, vocab {vocab}", tinytorch_s=t_fast)
        rows.append(
            dict(
                common,
                reference="tokenizers BpeTrainer (Rust, 1 thread)",
                reference_s=t_hf,
                ratio=t_hf / t_fast,
                target="ratio >= 0.2 (within 5x)",
                same_merges="same set" if same_set else "different set",
            )
        )
        rows.append(
            dict(
                common,
                reference="reference trainer" + note,
                reference_s=t_ref,
                ratio=t_ref / t_fast,
                target="ratio >= 20",
                same_merges="same list",
            )
        )
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    enc = [r for r in rows if r["task"].startswith("GPT-2")]
    tr = [r for r in rows if r["task"].startswith("BPE")]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(enc))
    a.bar([i - 0.2 for i in x], [r["tinytorch_MB_per_s"] for r in enc], 0.4, label="tinytorch")
    a.bar([i + 0.2 for i in x], [r["reference_MB_per_s"] for r in enc], 0.4, label="tiktoken")
    a.set_xticks(list(x), [r["task"].split(", ")[1].split(" (")[0] for r in enc])
    a.set_ylabel("MB/s (one thread)")
    a.set_title("GPT-2 encoding throughput")
    a.legend()
    vocabs = sorted({int(r["task"].rsplit(" ", 1)[1]) for r in tr})
    labels = ["tinytorch", "tokenizers", "reference"]
    for k, lab in enumerate(labels):
        ys = []
        for v in vocabs:
            rs = [r for r in tr if r["task"].endswith(f" {v}")]
            ys.append(rs[0]["tinytorch_s"] if k == 0 else rs[k - 1]["reference_s"])
        b.bar([i + (k - 1) * 0.27 for i in range(len(vocabs))], ys, 0.27, label=lab)
    b.set_xticks(range(len(vocabs)), [f"vocab {v}" for v in vocabs])
    b.set_yscale("log")
    b.set_ylabel("seconds (log scale)")
    b.set_title("BPE training on tinyshakespeare")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    from tinytorch.bench import RESULTS, write_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per encoder")
    ap.add_argument("--reference-max-merges", type=int, default=None)
    args = ap.parse_args()
    rows = encode_rows(args.repeat) + train_rows(args.reference_max_merges)
    notes = (
        "ratio = reference time / tinytorch time (higher is better for tinytorch). Encoding: "
        "median of interleaved runs after a warm-up, tinytorch's chunk cache emptied before "
        "each run. Training: median of 3 interleaved runs, including pre-tokenization; the "
        "reference trainer runs once. same_merges: the reference trainer learns the same list "
        "of merges; `tokenizers` learns the same set, in an order that differs only among "
        "pairs with equal counts (it numbers bytes differently). One thread everywhere."
    )
    columns = ["task", "tinytorch_s", "reference", "reference_s"]
    columns += ["tinytorch_MB_per_s", "reference_MB_per_s", "ratio", "target", "same_merges"]
    write_results("tokenizer", "cpu", columns, rows, notes=notes)
    plot(rows, RESULTS / "tokenizer_cpu.png")


if __name__ == "__main__":
    main()
