"""The embedding, curation and index commands run on CUDA when present (as the paper's code), else on CPU.

``experiment.runtime.select_device`` gives the device of
``recipes/microsoft_curation_toemb.py``, ``retrieve_ds_t2t.py`` and
``retrieval_eval.py`` (through ``experiment.weights.load_eval_model``) and of
``retrieve_from_emb_thresh.py``; ``inference.index.model_load_args`` that of
``build_index.py`` and ``search.py``. ``torch.cuda.is_available`` is
monkeypatched: nothing runs on a GPU.
"""

import os

import pytest
import torch

from conftest import REPO
from experiment.runtime import default_device, inference_precision, select_device


@pytest.fixture(params=[True, False], ids=["cuda_present", "no_cuda"])
def cuda_present(request, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: request.param)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return request.param


def test_default_is_cuda_when_present_else_cpu(cuda_present):
    expected = "cuda" if cuda_present else "cpu"
    assert default_device() == expected
    assert select_device({}) == expected and select_device({"device": None}) == expected


def test_an_explicit_device_wins(cuda_present):
    assert select_device({"device": "cpu"}) == "cpu"
    assert select_device({"device": "cuda:1"}) == "cuda:1"


def test_under_torchrun_each_rank_takes_its_gpu(cuda_present, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert select_device({}) == ("cuda:3" if cuda_present else "cpu")
    assert select_device({"device": "cpu"}) == "cpu"


def test_fp16_is_kept_on_the_default_gpu(cuda_present, capsys):
    """fp16 needs CUDA: kept when the default device is a GPU, fp32 (with a warning) on a CPU."""
    assert inference_precision({"precision": "fp16"}, {}) == ("fp16" if cuda_present else "fp32")
    assert ("needs a CUDA GPU" in capsys.readouterr().err) is not cuda_present


def test_index_and_search_default_to_the_same_device(cuda_present):
    import argparse

    from inference.index import add_model_arguments, model_load_args

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert model_load_args(parser.parse_args([]))["device"] == ("cuda" if cuda_present else "cpu")
    assert model_load_args(parser.parse_args(["--device=cpu"]))["device"] == "cpu"


@pytest.mark.parametrize("script", ["microsoft_curation_toemb", "retrieve_ds_t2t", "retrieve_from_emb_thresh",
                                    "retrieval_eval"])
def test_recipes_take_their_device_from_select_device(script):
    """No recipe of the embedding and curation steps picks its device itself (e.g. a hard-coded "cpu")."""
    with open(os.path.join(REPO, "recipes", f"{script}.py"), encoding="utf-8") as f:
        text = f.read()
    assert "load_eval_model(" in text or "select_device(" in text
    assert '"cpu"' not in text and "'cpu'" not in text
