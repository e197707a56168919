"""Sample quality of a class-conditional model, class by class (Miyato & Koyama 2018's intra-FID;
the classifier-accuracy check of conditional GAN papers): for each class asked for, the FID of
that class's samples against that class's real images, and the share of its samples that the
dataset's labelled classifier assigns to it.

    scores = class_scores(real_f, real_labels, fake_f, fake_labels, logits=classifier.logits)
    scores["intra_fid"], scores["class_accuracy"], scores["class_accuracy_min"]
"""

from __future__ import annotations

from typing import Callable

import torch

from genmodels.metrics.frechet import frechet_distance, gaussian_stats


def class_scores(real_f: torch.Tensor, real_labels: torch.Tensor, fake_f: torch.Tensor, fake_labels: torch.Tensor,
                 logits: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """intra_fid: the mean over the classes of `fake_labels` of FID(class's samples, class's real
    images), over the classes with at least 2 of each; with `logits` (features -> class logits,
    the labelled classifier's head) class_accuracy, the mean over those classes of the share of
    its samples classified as it, and class_accuracy_min, the worst class's share."""
    real_labels, fake_labels = real_labels.to(real_f.device), fake_labels.to(fake_f.device)
    fids, accuracy = [], []
    predicted = logits(fake_f).argmax(dim=1) if logits is not None else None
    for k in fake_labels.unique().tolist():
        real_k, fake_k = real_f[real_labels == k], fake_f[fake_labels == k]
        if len(real_k) >= 2 and len(fake_k) >= 2:
            fids.append(frechet_distance(*gaussian_stats(real_k), *gaussian_stats(fake_k)))
        if predicted is not None:
            accuracy.append(float((predicted[fake_labels == k] == k).double().mean()))
    out = {"intra_fid": sum(fids) / len(fids) if fids else float("nan")}
    if accuracy:
        out |= {"class_accuracy": sum(accuracy) / len(accuracy), "class_accuracy_min": min(accuracy)}
    return out
