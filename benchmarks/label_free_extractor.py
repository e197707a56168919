"""The label-free extractor on a labelled dataset, labels used for this report only: how long it
trains on the training split minus the held-out split, and its cosine 10-NN accuracy on the test
split beside, in the same run, raw pixels and randomly initialised networks of the same shape (the
toolkit's classifier's body, and the contrastive encoder itself) read at the same layer.

    GENMODELS_DATA=../shared/datasets python benchmarks/label_free_extractor.py [--dataset fashion-mnist]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from common import matmul_peak_gflops, write_result
from device_throughput import cpu_has_bf16_units
from genmodels.data import DataConfig, load_data
from genmodels.metrics.classifier import ClassifierNet
from genmodels.metrics.contrastive import (CONTRASTIVE_VERSION, EPOCHS, ContrastiveFeatures, ContrastiveNet,
                                           contrastive_name, train_contrastive)
from genmodels.metrics.extractor import extract
from genmodels.metrics.knn import knn_accuracy


def knn(features: ContrastiveFeatures, train, test) -> float:
    return round(knn_accuracy(extract(features, train.images), train.labels, extract(features, test.images),
                              test.labels), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = load_data(DataConfig(name=args.dataset))
    train, test = splits.train, splits.test
    info = {"image_shape": list(train.images.shape[1:])}
    peak = matmul_peak_gflops(torch.device("cpu"))
    start = time.perf_counter()
    net = train_contrastive(train, contrastive_name(args.dataset, train), seed=args.seed)
    seconds = time.perf_counter() - start
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        random_contrastive = ContrastiveNet(train.images.shape[1]).eval()
        torch.manual_seed(args.seed)
        random_classifier = ClassifierNet(train.images.shape[1]).eval()
    # the classifier's body read at the same layer as the encoder's (its first 13 modules)
    random_classifier_as_encoder = ContrastiveNet(train.images.shape[1])
    random_classifier_as_encoder.body = random_classifier.body
    pixels = round(knn_accuracy(train.images.flatten(1).float(), train.labels, test.images.flatten(1).float(),
                                test.labels), 4)
    result = {
        "dataset": args.dataset, "train_images": len(train), "test_images": len(test), "epochs": EPOCHS,
        "seed": args.seed, "extractor_version": CONTRASTIVE_VERSION,
        "machine": {"cpu_threads": torch.get_num_threads(), "cores": os.cpu_count(),
                    "fp32_matmul_peak_gflops": round(peak), "bf16_units": cpu_has_bf16_units()},
        "train_seconds": round(seconds, 1),
        "knn10_test_accuracy": {
            "contrastive": knn(ContrastiveFeatures(net, "trained", info), train, test),
            "raw_pixels": pixels,
            "random_contrastive_net": knn(ContrastiveFeatures(random_contrastive, "random", info), train, test),
            "random_classifier_net": knn(ContrastiveFeatures(random_classifier_as_encoder.eval(), "random", info),
                                         train, test),
        },
    }
    print(result)
    write_result(f"label_free_extractor-{args.dataset}", result)


if __name__ == "__main__":
    main()
