"""Datasets as uint8 tensors. One module per source format (`idx`, `imagefolder`), the split
logic (`splits`), the config section (`config`) and the tensors they all produce (`tensors`).

Each split is read once into a (N, C, H, W) uint8 tensor with its labels, on the training device;
the Trainer slices batches out of it, so no Python runs per image. Labels travel with the images;
a model that is not conditional never reads them.
"""

from genmodels.data.config import NAMED_DATASETS, DataConfig
from genmodels.data.idx import DATASETS, find_dataset, load_raw, read_idx, read_idx_split
from genmodels.data.imagefolder import load_imagefolder
from genmodels.data.roots import candidate_roots
from genmodels.data.splits import heldout_split, kfold_splits, load_data, load_splits, raw_splits, select
from genmodels.data.tensors import DataSplits, Split, take

__all__ = ["DATASETS", "NAMED_DATASETS", "DataConfig", "DataSplits", "Split", "candidate_roots", "find_dataset",
           "heldout_split", "kfold_splits", "load_data", "load_imagefolder", "load_raw", "load_splits", "raw_splits",
           "read_idx", "read_idx_split", "select", "take"]
