"""A 4-layer BERT-shaped encoder with every Linear magnitude-pruned to 90% (per layer), for
``sparseforge bench benchmarks/bert4_90.py:model``."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import models
from model_suite import prune_module

def model():
    module, inputs = models.bert_encoder(layers=4)
    prune_module(module, {"linear"}, 0.9)
    return module, inputs
