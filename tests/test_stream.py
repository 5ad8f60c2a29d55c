"""Streaming the training data: index views into the folder cache, the prefetching batch source, the
placement switch, and bit-identical training against the device-resident path."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

import cnnlab as cl
from cnnlab.data.mapped import MappedImages
from cnnlab.data.types import Split
from cnnlab.engine import placement
from cnnlab.engine.batches import DeviceBatches, Prefetcher, StreamBatches
from cnnlab.engine.inference import evaluate, predict
from test_folder import make_folder


@pytest.fixture
def on_disk(tmp_path):
    """A 50-image uint8 array saved as .npy and mapped back, as the folder cache is."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (50, 3, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    return arr, np.load(tmp_path / "x.npy", mmap_mode="r")


def test_mapped_images_index_like_the_array_they_view(on_disk):
    arr, mm = on_disk
    rows = np.random.default_rng(1).permutation(50)[:30]
    for base in (mm, arr):  # read with preadv from the file, and through numpy
        view = MappedImages(base, rows)
        assert view._file is not None if base is mm else view._file is None
        assert len(view) == 30 and tuple(view.shape) == (30, 3, 6, 6) and view.dtype == torch.uint8
        assert np.array_equal(view[3].numpy(), arr[rows[3]])
        assert np.array_equal(view[5:12].numpy(), arr[rows[5:12]])
        pick = torch.tensor([7, 7, 0, 29, 1])
        assert np.array_equal(view[pick].numpy(), arr[rows[pick.numpy()]])
        mask = torch.arange(30) % 3 == 0
        assert np.array_equal(view[mask].numpy(), arr[rows[mask.numpy()]])
        assert np.array_equal(view.to("cpu").numpy(), arr[rows]) and np.array_equal(
            np.asarray(view), arr[rows]
        )
    with pytest.raises(IndexError):
        MappedImages(mm, rows)[torch.tensor([30])]
    again = pickle.loads(pickle.dumps(MappedImages(mm, rows)))  # to another process: its own descriptor
    assert np.array_equal(again[2:9].numpy(), arr[rows[2:9]])


@pytest.mark.parametrize("drop_last", [False, True])
def test_stream_batches_are_the_device_batches(on_disk, drop_last):
    arr, mm = on_disk
    labels = torch.arange(50) % 4
    kw = dict(batch_size=8, shuffle=True, seed=3, drop_last=drop_last)
    dev = DeviceBatches(torch.from_numpy(arr.copy()), labels, **kw)
    stream = StreamBatches(MappedImages(mm), labels, prefetch=2, **kw)
    assert len(stream) == len(dev) and stream.num_samples == dev.num_samples
    for epoch, start in [(1, 0), (2, 0), (2, 3)]:  # start: resuming mid-epoch
        got = list(stream.epoch(epoch, start_step=start))
        want = list(dev.epoch(epoch, start_step=start))
        assert len(got) == len(want) == len(dev) - start
        for (xs, ys, i_s), (xd, yd, i_d) in zip(got, want, strict=True):
            assert torch.equal(xs, xd) and torch.equal(ys, yd) and torch.equal(i_s, i_d)


def test_a_ddp_rank_streams_only_its_rows_of_each_global_batch(on_disk):
    """Rank 1 of 2: its rows of every batch (the last one short) read from the cache and equal to the
    device batch's, the other rank's rows never read (left black)."""
    from types import SimpleNamespace

    from cnnlab.engine.distributed import Distributed

    arr, mm = on_disk
    labels = torch.arange(50) % 4
    rank1 = SimpleNamespace(active=True, world=2, rank=1)
    shard = lambda n: Distributed.shard_rows(rank1, n)  # noqa: E731
    asked: list[int] = []

    class Counting(MappedImages):
        def gather(self, rows):
            asked.extend(np.asarray(rows).tolist())
            return super().gather(rows)

    kw = dict(batch_size=8, shuffle=True, seed=3)
    dev = DeviceBatches(torch.from_numpy(arr.copy()), labels, **kw)
    stream = StreamBatches(Counting(mm), labels, prefetch=2, shard=shard, **kw)
    wanted = []
    for (xs, ys, i_s), (xd, yd, i_d) in zip(stream.epoch(1), dev.epoch(1), strict=True):
        rows = shard(len(i_d))
        assert torch.equal(xs[rows], xd[rows]) and not xs[: rows.start].any() and not xs[rows.stop :].any()
        assert torch.equal(ys, yd) and torch.equal(i_s, i_d)
        wanted += i_d[rows].tolist()
    assert sorted(asked) == sorted(wanted) and len(asked) == 25  # batches of 8 (4 + 4), the last of 2 (1 + 1)


def test_prefetcher_passes_errors_on_and_stops_when_left_early():
    def read(i):
        if i == 5:
            raise OSError("disk gone")
        return i * 10

    with Prefetcher(read, list(range(10)), depth=2) as ahead, pytest.raises(OSError, match="disk gone"):
        assert [r for _, r in ahead] == [0, 10, 20, 30, 40]
    pre = Prefetcher(lambda i: i, list(range(1000)), depth=2)
    with pre as ahead:
        next(ahead)
    assert not pre.thread.is_alive()  # left after one item: the thread ended, not 998 reads later


def test_auto_placement_keeps_small_data_resident_and_streams_what_does_not_fit(monkeypatch):
    x = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)  # 307 KB
    cpu = torch.device("cpu")
    where, why = placement.choose_placement("auto", x, cpu)
    assert where == "device" and "fit in 50%" in why
    monkeypatch.setattr(placement, "free_memory", lambda d: (400_000, "available memory"))
    where, why = placement.choose_placement("auto", x, cpu)
    assert where == "stream" and "exceed 50% of the 0.4 MB available memory" in why
    assert placement.choose_placement("device", x, cpu)[0] == "device"  # forced either way


def _folder_like(tiny, tmp_path) -> cl.Dataset:
    """``tiny`` with every split an index view into one .npy file, as a folder dataset's are."""
    splits = [tiny.train, tiny.val, tiny.test]
    whole = np.concatenate([s.images.numpy() for s in splits])
    np.save(tmp_path / "all.npy", whole)
    mm = np.load(tmp_path / "all.npy", mmap_mode="r")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(whole))  # the cache holds the images in another order than the splits
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    np.save(tmp_path / "shuffled.npy", whole[perm])
    mm = np.load(tmp_path / "shuffled.npy", mmap_mode="r")
    out, at = {}, 0
    for name, s in zip(("train", "val", "test"), splits, strict=True):
        out[name] = Split(MappedImages(mm, inv[at : at + len(s)]), s.labels)
        at += len(s)
    return replace(tiny, **out)


def test_one_epoch_streamed_gives_the_same_weights_as_device_resident(tiny, tmp_path, one_thread):
    data = _folder_like(tiny, tmp_path)
    assert torch.equal(data.train.images[:], tiny.train.images)
    weights = {}
    for where in ("device", "stream"):
        model = cl.create_model("cnn2", seed=0)
        cl.fit(
            model, data, epochs=1, batch_size=50, progress=False, data_placement=where, augment_flip="random",
            augment_translate=2,
        )  # fmt: skip
        weights[where] = model.state_dict()
    assert all(torch.equal(weights["device"][k], weights["stream"][k]) for k in weights["device"])
    model = cl.create_model("cnn2", seed=0)
    mapped, resident = evaluate(model, data.test), evaluate(model, tiny.test)  # in chunks, no full copy
    assert mapped == resident
    assert torch.equal(predict(model, data.test), predict(model, tiny.test))


def test_a_memory_cap_below_the_host_memory_is_what_auto_placement_counts(monkeypatch):
    x = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)  # 307 KB
    monkeypatch.setattr(placement, "memory_cap", lambda: (600_000, 100_000))  # a cgroup's 0.6 MB, 0.1 MB used
    where, why = placement.choose_placement("auto", x, torch.device("cpu"))
    assert where == "stream" and "memory left under the 0.6 MB memory cap" in why


def test_a_memory_cap_too_small_even_to_stream_is_one_line(monkeypatch, tiny):
    from cnnlab.errors import CnnlabError

    monkeypatch.setattr(placement, "memory_cap", lambda: (200_000, 100_000))  # 0.1 MB left
    with pytest.raises(
        CnnlabError, match=r"too small even to stream batches of 50 images of 1x28x28"
    ) as info:
        cl.fit(
            cl.create_model("cnn2", seed=0),
            tiny,
            epochs=1,
            batch_size=50,
            progress=False,
            data_placement="stream",
        )
    assert "\n" not in str(info.value)
    placement.check_stream_memory(tiny.train.images, 1)  # one small image at a time fits


def _fit_streamed(model, data, batch_size=50):
    return cl.fit(model, data, epochs=1, batch_size=batch_size, progress=False, data_placement="stream")


def test_a_cap_that_streams_the_batches_but_not_the_models_step_is_one_line(monkeypatch, tiny):
    """cnn2 on 50 images of 28x28: the batches in flight need 0.5 MB, the step ~23 MB of activations and
    ~6 MB of gradients and Adam state; 12 MB left under the cap is refused before training starts."""
    monkeypatch.setattr(placement, "memory_cap", lambda: (20_000_000, 8_000_000))
    model = cl.create_model("cnn2", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(cl.CnnlabError) as info:
        _fit_streamed(model, tiny)
    text = str(info.value)
    assert "\n" not in text and text.startswith(
        "The memory cap (20.0 MB, 12.0 MB left) is too small to train"
    )
    assert "batches of 50 images of 1x28x28: a step needs at least" in text
    for says in (
        "activations kept for backward",
        "adam state",
        "--batch-size",
        "smaller model",
        "raise the cap",
    ):
        assert says in text
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained
    _fit_streamed(model, tiny, batch_size=5)  # batches of 5 fit in the same room (~8 MB)


def test_a_generous_cap_trains_streamed(monkeypatch, tiny):
    monkeypatch.setattr(placement, "memory_cap", lambda: (64_000_000_000, 1_000_000_000))
    history = _fit_streamed(cl.create_model("cnn2", seed=0), tiny)
    assert history.epochs == 1


def test_the_cli_refuses_a_cap_too_small_for_the_step_in_one_line(monkeypatch, tmp_path, run_cli):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(placement, "memory_cap", lambda: (4_000_000, 2_000_000))  # 2 MB left
    root = make_folder(tmp_path / "pets", {"cat": 16, "dog": 16})
    code, _, err = run_cli(
        "train", "--data", root, "--image-size", "32", "--model", "conv64psame-conv64psame-pool-dense16",
        "--epochs", "1", "--batch-size", "8", "--data-placement", "stream", "--out", tmp_path / "r", "--quiet",
    )  # fmt: skip
    *decoded, last = err.strip().splitlines()  # the folder's decode line, then the error's one line
    assert code == 1 and "Traceback" not in err and len(decoded) == 1 and "decoded in" in decoded[0], err
    assert last.startswith(
        "cnnlab train: error: The memory cap (4.0 MB, 2.0 MB left) is too small to train this model on "
        "batches of 8 images of 3x32x32: a step needs at least"
    ) and last.endswith("or raise the cap.")
    assert not (tmp_path / "r").exists()


def _saved_bytes(model, x) -> int:
    """What a real training forward keeps for backward: the storages autograd saves, each once, without
    the parameters and the input."""
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {x.untyped_storage().data_ptr()}
    kept: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            kept[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(x)
    return sum(kept.values())


@pytest.mark.parametrize("name,optimizer", [("cnn2", "adam"), ("fastcnn", "sgd"), ("resnet_s", "adamw")])
def test_the_step_estimate_is_what_a_real_step_keeps(name, optimizer):
    shape = (1, 28, 28) if name != "resnet_s" else (3, 32, 32)
    model = cl.create_model(name, input_shape=shape, num_classes=10, seed=0)
    acts, state = placement.step_memory(model, shape, 16, optimizer)
    x = torch.rand(16, *shape)
    truth = _saved_bytes(model, x)
    assert 0.8 * truth <= acts <= truth  # from below, and close
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(optimizer, torch.optim.SGD)
    opt = opt(model.parameters(), lr=1e-3, **({"momentum": 0.9} if optimizer == "sgd" else {}))
    model(x).sum().backward()
    opt.step()
    grads = sum(p.grad.nbytes for p in model.parameters())
    kept = sum(t.nbytes for st in opt.state.values() for t in st.values() if t.dim() > 0)  # not step counts
    assert state == grads + kept


def test_the_step_estimate_runs_no_hook_and_moves_nothing():
    model = cl.create_model("fastcnn", seed=0)
    calls = []
    model.register_forward_pre_hook(lambda m, i: calls.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert placement.step_memory(model, (1, 28, 28), 64) is not None
    assert calls == [] and all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm's stats too


@pytest.mark.parametrize("info", cl.list_models(), ids=lambda m: m.name)
def test_every_model_s_step_can_be_estimated(info):
    model = cl.create_model(info.name, input_shape=(3, 32, 32), num_classes=10)
    acts, state = placement.step_memory(model, (3, 32, 32), 8)
    assert acts > 0 or info.name == "mlp"  # the MLP keeps only a view of its input and one hidden layer
    assert state == 3 * 4 * cl.count_params(model)


def test_a_model_the_estimate_cannot_run_counts_only_the_batches(monkeypatch, tiny):
    class Counting(torch.nn.Module):  # reads a value mid-forward: meta tensors hold none
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(784, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)) * (1.0 if x.sum().item() >= 0 else -1.0)

    monkeypatch.setattr(placement, "memory_cap", lambda: (10_000_000, 9_000_000))  # 1 MB left
    assert placement.step_memory(Counting(), (1, 28, 28), 50) is None
    placement.check_stream_memory(tiny.train.images, 50, model=Counting())  # the batches' 0.5 MB fit


def test_the_plan_line_says_where_the_data_live_and_why(tiny):
    from cnnlab.config import TrainConfig
    from cnnlab.experiment import describe_plan

    assert describe_plan(TrainConfig(data_placement="stream"), tiny).endswith(
        "; data placement stream: as --data-placement stream asks"
    )
    assert "; data placement device: the training images (0.2 MB) fit in 50% of the" in describe_plan(
        TrainConfig(device="cpu"), tiny
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_cgroups_usage_leaves_out_the_inactive_file_pages_the_kernel_reclaims_first(tmp_path, version):
    """After a large folder is decoded or read, its file pages count in the cgroup's usage; the kernel
    drops them before it kills anything, so they are not counted as taken."""
    names = placement._V1 if version == "v1" else placement._V2
    (tmp_path / names[0]).write_text("3221225472\n")  # a 3 GiB cap
    (tmp_path / names[1]).write_text("2500000000\n")
    assert placement.cgroup_memory(tmp_path, names) == (3221225472, 2500000000)  # no memory.stat: all of it
    (tmp_path / "memory.stat").write_text(f"cache 2100000000\nactive_file 100000000\n{names[2]} 2000000000\n")
    assert placement.cgroup_memory(tmp_path, names) == (3221225472, 500000000)
    (tmp_path / names[0]).write_text("max\n")
    assert placement.cgroup_memory(tmp_path, names) is None  # no cap
    with pytest.raises(OSError):
        placement.cgroup_memory(tmp_path / "gone", names)
