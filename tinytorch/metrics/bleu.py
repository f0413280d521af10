"""Corpus BLEU (Papineni et al., 2002), computed as sacrebleu computes it.

For each order n = 1..max_n, over the whole corpus:

    p_n = sum over sentences of clipped matches / sum of hypothesis n-grams

where a hypothesis n-gram counts as matched at most as often as it appears in the one
reference that holds it most often ("clipping": "the the the" against "the cat" matches one
"the"). Then

    BLEU = BP * exp(mean_n log p_n),   BP = 1 if c > r else exp(1 - r / c)

with c the total hypothesis length and r the sum, over sentences, of the reference length
closest to the hypothesis's (the shorter one on a tie). The brevity penalty BP stands in for
recall: without it, a one-word hypothesis could score perfect precision. The score is on
sacrebleu's 0-100 scale. Without smoothing, one order with no match gives BLEU = 0.

Input: hypotheses as strings (tokenized by `tokenize`: "13a", sacrebleu's default and WMT's
mteval-v13a rules; "none", split on whitespace; or any function str -> list of tokens) or as
lists of tokens already; references[i] is the list of references of hypothesis i (one string
or token list each, as many per sentence as you have, at least one).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

SMOOTHING = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}  # default values, as sacrebleu

# mteval-v13a's tokenizer as sacrebleu writes it (sacrebleu/tokenizers/tokenizer_re.py): split
# off punctuation and symbols, periods and commas unless inside a number, dashes after digits
_13A = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line: str) -> list[str]:
    """WMT's standard BLEU tokenization (mteval-v13a), as sacrebleu's tokenize='13a'."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&")
        line = line.replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, repl in _13A:
        line = pattern.sub(repl, line)
    return line.split()


@dataclass
class BLEUScore:
    """score (0-100), the n-gram precisions (0-100), brevity penalty, lengths, counts."""

    score: float
    precisions: list[float]
    bp: float
    hyp_len: int
    ref_len: int
    correct: list[int] = field(repr=False)
    total: list[int] = field(repr=False)

    def __float__(self) -> float:
        return self.score

    def __str__(self) -> str:
        prec = "/".join(f"{p:.1f}" for p in self.precisions)
        ratio = self.hyp_len / self.ref_len if self.ref_len else 0.0
        return (
            f"BLEU = {self.score:.2f} {prec} (BP = {self.bp:.3f} ratio = {ratio:.3f} "
            f"hyp_len = {self.hyp_len} ref_len = {self.ref_len})"
        )


def _tokens(sentence, tokenize, lowercase: bool) -> list[str]:
    if not isinstance(sentence, str):  # already tokenized
        tokens = [str(t) for t in sentence]
        return [t.lower() for t in tokens] if lowercase else tokens
    if lowercase:
        sentence = sentence.lower()
    sentence = sentence.rstrip()
    if callable(tokenize):
        return list(tokenize(sentence))
    if tokenize == "13a":
        return tokenize_13a(sentence)
    if tokenize == "none":
        return sentence.split()
    raise ValueError(f"tokenize must be '13a', 'none' or a function, got {tokenize!r}")


def ngram_counts(tokens: list[str], max_n: int) -> Counter:
    """How often each n-gram of orders 1..max_n occurs in `tokens`: a Counter whose keys are
    tuples of n consecutive tokens (n = 1..max_n), counted at every position, overlaps too.

        ngram_counts(["the", "the", "cat"], 2)
        == Counter({("the",): 2, ("cat",): 1, ("the", "the"): 1, ("the", "cat"): 1})

    A sentence of L tokens has L - n + 1 n-grams (none when L < n); BLEU clips a hypothesis'
    counts by a reference's, which is why they are counts and not sets.
    """
    # BEGIN EXERCISE ch10: ngram_counts - Counter of tuple(tokens[i:i+n]) for n in 1..max_n
    counts = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i : i + n])] += 1
    return counts
    # END EXERCISE


def _closest(hyp_len: int, ref_lens: list[int]) -> int:
    """The reference length closest to the hypothesis length; the shorter one on a tie."""
    return min(ref_lens, key=lambda r: (abs(hyp_len - r), r))


def corpus_bleu(
    hypotheses,
    references,
    *,
    max_n: int = 4,
    smooth: str = "none",
    smooth_value: float | None = None,
    tokenize="13a",
    lowercase: bool = False,
) -> BLEUScore:
    """BLEU of a corpus (see the module docstring); `float(result)` is the 0-100 score.

    smooth: "none" (default), or sacrebleu's "floor" (a zero count becomes smooth_value,
    0.1), "add-k" (k = smooth_value, 1, added to counts and totals of orders >= 2) or "exp"
    (mteval's: the k-th zero precision becomes 1 / (2^k total)).
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} lists of references: "
            "references[i] must hold the references of hypotheses[i]"
        )
    if smooth not in SMOOTHING:
        raise ValueError(f"smooth must be one of {list(SMOOTHING)}, got {smooth!r}")
    k = SMOOTHING[smooth] if smooth_value is None else smooth_value
    correct, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if isinstance(refs, str):
            refs = [refs]
        if len(refs) == 0:
            raise ValueError(f"hypothesis {i} has no reference")
        # BEGIN EXERCISE ch08: corpus_bleu - add this sentence's lengths and clipped n-gram counts
        h = _tokens(hyp, tokenize, lowercase)
        best = Counter()  # per n-gram, the most any one reference holds (the clip)
        lens = []
        for ref in refs:
            r = _tokens(ref, tokenize, lowercase)
            lens.append(len(r))
            for gram, count in ngram_counts(r, max_n).items():
                best[gram] = max(best[gram], count)
        hyp_len += len(h)
        ref_len += _closest(len(h), lens)
        for gram, count in ngram_counts(h, max_n).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, best[gram])
        # END EXERCISE
    return bleu_from_counts(correct, total, hyp_len, ref_len, smooth, k)


def bleu_from_counts(correct, total, hyp_len, ref_len, smooth="none", k=None) -> BLEUScore:
    """BLEU from the corpus' sufficient statistics (sacrebleu's compute_bleu)."""
    correct, total = list(correct), list(total)
    max_n = len(correct)
    bp = 1.0
    if hyp_len < ref_len:
        bp = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    precisions = [0.0] * max_n
    if not any(correct):  # nothing matches at all (also an empty corpus)
        return BLEUScore(0.0, precisions, bp, hyp_len, ref_len, correct, total)
    # BEGIN EXERCISE ch08: corpus_bleu - precisions (0-100, smoothed), then BP * exp(mean log p)
    halvings = 1.0
    for n in range(max_n):
        if smooth == "add-k" and n > 0:
            correct[n] += k
            total[n] += k
        if total[n] == 0:  # no hypothesis is n words long: this and higher orders stay 0
            break
        if correct[n] == 0:
            if smooth == "exp":
                halvings *= 2
                precisions[n] = 100.0 / (halvings * total[n])
            elif smooth == "floor":
                precisions[n] = 100.0 * k / total[n]
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    if min(precisions) == 0.0:
        score = 0.0  # log 0: the geometric mean is 0
    else:
        score = bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    # END EXERCISE
    return BLEUScore(score, precisions, bp, hyp_len, ref_len, correct, total)
