"""PairDataset with open_clip's real preprocessing and tokenizer (offline)."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from skimage import data as skimage_data
from torch.utils.data import DataLoader

from fairvlm.data import PairDataset
from fairvlm.data.table import Attribute, PairTable

CONTEXT_LENGTH = 77  # the RN50 text tower's context


@pytest.fixture(scope="module")
def clip_parts():
    """open_clip's eval transform at 64 px and the RN50 tokenizer, built with no network."""
    real_connect = socket.socket.connect

    def refuse(*args, **kwargs):
        raise AssertionError("open_clip tried to use the network")

    socket.socket.connect = refuse
    try:
        preprocess = open_clip.image_transform(64, is_train=False)
        tokenizer = open_clip.get_tokenizer("RN50")
        tokenizer(["warm-up"])
    finally:
        socket.socket.connect = real_connect
    return preprocess, tokenizer


@pytest.fixture
def table(tmp_path) -> PairTable:
    retina = np.ascontiguousarray(skimage_data.retina()[::8, ::8])
    Image.fromarray(retina).save(tmp_path / "retina.png")
    np.savez_compressed(tmp_path / "data_00001.npz",
                        slo_fundus=np.linspace(0, 255, 30 * 20, dtype=np.float32).reshape(30, 20))
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    long_note = " ".join(["cup-to-disc ratio 0.8 with inferior rim thinning"] * 20)
    frame = pd.DataFrame({
        "id": ["retina", "data_00001", "mr"],
        "split": ["train", "train", "test"],
        "image": [str(tmp_path / "retina.png"), f"{tmp_path / 'data_00001.npz'}::slo_fundus",
                  str(tmp_path / "mr.dcm")],
        "text": ["glaucoma suspect, CDR 0.7", long_note, "no glaucoma"],
        "label": np.array([1, 1, 0], dtype=np.int8),
        "race": [0, 2, -1],
    })
    return PairTable(frame, {"race": Attribute("race", {0: "Asian", 2: "White"})})


def test_items_match_open_clip_on_the_original_files(table, clip_parts):
    preprocess, tokenizer = clip_parts
    dataset = PairDataset(table, [2, 0, 1], preprocess, tokenizer)
    assert len(dataset) == 3
    for position, index in enumerate([2, 0, 1]):
        image, tokens, returned = dataset[position]
        assert returned == index
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert tokens.shape == (CONTEXT_LENGTH,) and tokens.dtype == torch.long
        expected_tokens = open_clip.tokenize([table.frame["text"].iloc[index]])[0]
        assert torch.equal(tokens, expected_tokens)  # long note cut at the context, by tokens
    image, _, _ = dataset[1]  # the PNG, compared with open_clip on PIL's own decode
    reference = preprocess(Image.open(table.frame["image"].iloc[0]).convert("RGB"))
    torch.testing.assert_close(image, reference)
    gray, _, _ = dataset[2]  # the npz grayscale image: three equal channels before normalising
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    raw = gray * std + mean
    torch.testing.assert_close(raw[0], raw[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(raw[1], raw[2], atol=1e-5, rtol=0)


def test_batches_through_a_data_loader(table, clip_parts):
    preprocess, tokenizer = clip_parts
    dataset = PairDataset(table, table.split_indices("train"), preprocess, tokenizer)
    images, tokens, indices = next(iter(DataLoader(dataset, batch_size=2)))
    assert images.shape == (2, 3, 64, 64) and tokens.shape == (2, CONTEXT_LENGTH)
    assert indices.tolist() == [0, 1]


def test_out_of_range_indices_refused(table, clip_parts):
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 3\)"):
        PairDataset(table, [0, 3], *clip_parts)
