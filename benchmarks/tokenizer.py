"""Tokenizer speed: GPT-2 encoding vs tiktoken, BPE training vs `tokenizers` and the reference.

Encode throughput: MB/s of UTF-8 input, one thread, on all of tinyshakespeare (best of 5
runs; the chunk cache is cleared before each of ours, so every run starts cold).
Training: tinyshakespeare, vocab 1024 and 4096; tinytorch's incremental trainer, the
straightforward reference trainer (recounts every pair before each merge) and the
`tokenizers` package's BpeTrainer with a byte-level pre-tokenizer.

    python benchmarks/tokenizer.py [--reference-max-merges 768]

The reference trainer is run in full at vocab 1024. At 4096 it would take tens of minutes,
so by default it runs its first --reference-max-merges merges and the table reports the time
extrapolated at that measured per-merge rate (a lower bound: later merges are not cheaper),
marked "extrapolated".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' trainer: one thread too


def best_of(fn, n=5):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    from common import write_results

    from tinytorch.data import dataset_path
    from tinytorch.text import (
        GPT2_PATTERN,
        GPT2Tokenizer,
        chunk_counts,
        train_merges,
        train_merges_reference,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("--reference-max-merges", type=int, default=768)
    args = ap.parse_args()
    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    rows = []

    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    ours = GPT2Tokenizer.from_files(dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab"))
    ranks = data_gym_to_mergeable_bpe_ranks(
        str(dataset_path("gpt2-vocab")), str(dataset_path("gpt2-encoder"))
    )
    enc = tiktoken.Encoding(
        "gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )
    assert ours.encode_ordinary(text) == enc.encode_ordinary(text)

    def ours_cold():
        ours._cache.clear()
        ours.encode_ordinary(text)

    t_ours, t_tik = best_of(ours_cold), best_of(lambda: enc.encode_ordinary(text))
    rows.append(
        dict(
            task="GPT-2 encode, tinyshakespeare",
            tinytorch_s=t_ours,
            reference="tiktoken",
            reference_s=t_tik,
            tinytorch_MB_per_s=mb / t_ours,
            reference_MB_per_s=mb / t_tik,
            ratio=t_tik / t_ours,
            target="ratio >= 0.2",
        )
    )

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    counts_t0 = time.perf_counter()
    counts = chunk_counts(text)
    t_count = time.perf_counter() - counts_t0
    for vocab in (1024, 4096):
        m = vocab - 256
        t0 = time.perf_counter()
        train_merges(counts, m)
        t_fast = time.perf_counter() - t0 + t_count

        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        t0 = time.perf_counter()
        hf.train_from_iterator([text], trainer=trainer)
        t_hf = time.perf_counter() - t0

        done = min(m, args.reference_max_merges)
        t0 = time.perf_counter()
        train_merges_reference(counts, done)
        t_ref = (time.perf_counter() - t0) * m / done + t_count
        ref_note = "" if done == m else f" (extrapolated from {done} merges)"
        rows.append(
            dict(
                task=f"BPE train, vocab {vocab}",
                tinytorch_s=t_fast,
                reference="tokenizers (Rust, 1 thread)",
                reference_s=t_hf,
                ratio=t_hf / t_fast,
                target="ratio >= 0.2 (within 5x)",
            )
        )
        rows.append(
            dict(
                task=f"BPE train, vocab {vocab}",
                tinytorch_s=t_fast,
                reference="reference trainer" + ref_note,
                reference_s=t_ref,
                ratio=t_ref / t_fast,
                target="ratio >= 20",
            )
        )
    notes = (
        "ratio = reference time / tinytorch time (higher is better for tinytorch). "
        "Training times include pre-tokenization and chunk counting. One thread each."
    )
    write_results(
        "tokenizer",
        "cpu",
        [
            "task",
            "tinytorch_s",
            "reference",
            "reference_s",
            "tinytorch_MB_per_s",
            "reference_MB_per_s",
            "ratio",
            "target",
        ],
        rows,
        notes=notes,
    )


if __name__ == "__main__":
    main()
