"""How well features separate classes without training anything on the labels: cosine k-nearest-
neighbour accuracy (the usual check of self-supervised features, Wu et al. 2018). Labels are used
here only, for a report; no extractor is chosen or trained with them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_accuracy(gallery: torch.Tensor, gallery_labels: torch.Tensor, queries: torch.Tensor,
                 query_labels: torch.Tensor, k: int = 10, chunk: int = 1000) -> float:
    """Share of `queries` whose k most cosine-similar `gallery` rows carry their label most often
    (ties go to the smallest label)."""
    gallery = F.normalize(gallery.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    n_classes = int(max(gallery_labels.max(), query_labels.max())) + 1
    correct = 0
    for start in range(0, len(queries), chunk):
        nearest = (queries[start : start + chunk] @ gallery.t()).topk(k, dim=1).indices
        votes = F.one_hot(gallery_labels[nearest], n_classes).sum(1)
        correct += (votes.argmax(1) == query_labels[start : start + chunk]).sum().item()
    return correct / len(queries)
