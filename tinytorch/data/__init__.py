"""tinytorch.data: datasets on disk, Dataset/DataLoader, splits and padding collation.

dataset_path("names")                   a checked local copy of a course dataset
char_splits("tinyshakespeare")          its train/validation ids by character, and the tokenizer
TensorDataset, Subset, random_split     examples and splits
DataLoader, default_collate             batches (seeded shuffling, drop_last)
pad_sequence, PadCollate                batches of variable-length sequences
tbptt_batches, TBPTTLoader              consecutive windows of one long text (truncated BPTT)
make_teacher_forcing_batch              (src, tgt_in, tgt_out) for translation (chapter 10)
"""

from .dataloader import DataLoader, PadCollate, default_collate, pad_sequence  # noqa: F401
from .dataset import Dataset, Subset, TensorDataset, as_generator, random_split  # noqa: F401
from .datasets import (  # noqa: F401
    REGISTRY,
    ChecksumError,
    DatasetNotFoundError,
    cache_dir,
    char_splits,
    dataset_path,
    sha256_of,
)
from .seq2seq import make_teacher_forcing_batch  # noqa: F401
from .windows import TBPTTLoader, spread_windows, tbptt_batches  # noqa: F401
