"""grain pipelines: the shuffled training stream, the same global batches for
any number of processes and from any start step, and the ordered, padded,
process-sliced evaluation batches."""

import collections
import itertools

import numpy as np
import pytest

from gjscc_jax import data

TRAIN_SIZE, TEST_SIZE, RESOLUTION = 20, 7, 8


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  config = data.default_data_config()
  config.name = "sample"
  config.resolution = RESOLUTION
  config.sample_train_size = TRAIN_SIZE
  config.sample_test_size = TEST_SIZE
  config.tfds_dir = str(tmp_path_factory.mktemp("tfds"))
  config.random_flip = False
  config.read_threads = 2
  config.prefetch_buffer_size = 8
  data.prepare(config)
  return config


@pytest.fixture(scope="module")
def train_images(config):
  source = data.get_data_source(config, "train")
  images = np.stack([source[i]["image"] for i in range(len(source))])
  assert len({image.tobytes() for image in images}) == TRAIN_SIZE
  return images


def _ids(batch_images, train_images):
  """Maps each image of a batch to its index in the train split."""
  lookup = {image.tobytes(): i for i, image in enumerate(train_images)}
  return [lookup[image.tobytes()] for image in batch_images]


def _take(dataset, count):
  iterator = iter(dataset)
  return [next(iterator)["image"] for _ in range(count)]


def test_batches_are_uint8_per_process_slices(config):
  loader = data.train_loader(config, global_batch_size=8, seed=0,
                             shard_index=1, shard_count=2)
  batch = next(iter(loader))
  assert set(batch) == {"image"}
  assert batch["image"].shape == (4, RESOLUTION, RESOLUTION, 3)
  assert batch["image"].dtype == np.uint8


def test_same_seed_same_batches_other_seed_other_order(config):
  def stream(seed):
    loader = data.train_loader(config, global_batch_size=4, seed=seed,
                               shard_index=0, shard_count=1)
    return np.stack(_take(loader, 5))
  np.testing.assert_array_equal(stream(7), stream(7))
  assert not np.array_equal(stream(7), stream(8))


def test_epochs_repeat_forever_each_a_full_permutation(config, train_images):
  loader = data.train_loader(config, global_batch_size=3, seed=1,
                             shard_index=0, shard_count=1)
  ids = list(itertools.chain.from_iterable(
      _ids(images, train_images) for images in _take(loader, 20)))
  epochs = [ids[i:i + TRAIN_SIZE] for i in range(0, 60, TRAIN_SIZE)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(TRAIN_SIZE))
  assert epochs[0] != epochs[1]  # Reshuffled every epoch.


@pytest.mark.parametrize("shard_count", [2, 4])
def test_process_slices_make_the_one_process_batches(config, shard_count):
  """P processes read disjoint row slices of the same global batches."""
  def stream(shard_index, count):
    return _take(data.train_loader(config, global_batch_size=8, seed=3,
                                   shard_index=shard_index, shard_count=count),
                 6)  # Crosses epochs (20 images, 8 per batch).
  one = stream(0, 1)
  slices = [stream(p, shard_count) for p in range(shard_count)]
  for b, batch in enumerate(one):
    np.testing.assert_array_equal(
        np.concatenate([s[b] for s in slices]), batch)


def test_random_flip_mirrors_about_half_the_images_reproducibly(
    config, train_images):
  flip_config = config.copy_and_resolve_references()
  flip_config.random_flip = True
  loader = data.train_loader(flip_config, global_batch_size=4, seed=5,
                             shard_index=0, shard_count=1)
  batches = _take(loader, 20)
  np.testing.assert_array_equal(np.stack(batches), np.stack(_take(loader, 20)))
  lookup = {image.tobytes(): i for i, image in enumerate(train_images)}
  flipped = collections.Counter()
  for image in itertools.chain.from_iterable(batches):
    if image.tobytes() in lookup:
      flipped[False] += 1
    else:
      assert image[:, ::-1].tobytes() in lookup  # The mirror of a source.
      flipped[True] += 1
  assert 20 <= flipped[True] <= 60, flipped  # Of 80 (p = 1/2: mean 40).


def test_start_step_continues_the_stream(config):
  """Starting at step s gives batches s, s+1, ... of a fresh stream, for any
  number of processes (what a resumed run reads)."""
  straight = _take(data.train_loader(config, global_batch_size=4, seed=11,
                                     shard_index=0, shard_count=1), 10)
  later = _take(data.train_loader(config, global_batch_size=4, seed=11,
                                  start_step=3, shard_index=0,
                                  shard_count=1), 7)  # Crosses an epoch.
  np.testing.assert_array_equal(np.stack(later), np.stack(straight[3:]))
  half = _take(data.train_loader(config, global_batch_size=4, seed=11,
                                 start_step=3, shard_index=1, shard_count=2), 7)
  np.testing.assert_array_equal(np.stack(half),
                                np.stack([b[2:] for b in straight[3:]]))


def test_stream_spec_names_what_decides_the_batches(config):
  spec = data.train_stream_spec(config, global_batch_size=4, seed=0)
  assert spec["train_images"] == TRAIN_SIZE and spec["global_batch_size"] == 4
  moved = config.copy_and_resolve_references()
  moved.read_threads = 1  # How data is read, or where from, is not in it.
  assert data.train_stream_spec(moved, global_batch_size=4, seed=0) == spec
  assert data.train_stream_spec(config, global_batch_size=8, seed=0) != spec
  assert data.train_stream_spec(config, global_batch_size=4, seed=1) != spec
  flip = config.copy_and_resolve_references()
  flip.random_flip = True
  assert data.train_stream_spec(flip, global_batch_size=4, seed=0) != spec


def test_bad_batch_size_shard_and_seed_raise_clear_errors(config):
  with pytest.raises(ValueError, match="not divisible by the 4 data shards"):
    data.train_loader(config, global_batch_size=6, seed=0, shard_index=0,
                      shard_count=4)
  with pytest.raises(ValueError, match="shard_index=2 must lie in"):
    data.train_loader(config, global_batch_size=4, seed=0, shard_index=2,
                      shard_count=2)
  with pytest.raises(ValueError,
                     match=r"seed must be an int in \[0, 2\*\*32\)"):
    data.train_loader(config, global_batch_size=4, seed=-1)
  with pytest.raises(ValueError, match="start_step=-1 must be >= 0"):
    data.train_loader(config, global_batch_size=4, seed=0, start_step=-1)


def test_default_shard_is_this_jax_process(config):
  loader = data.train_loader(config, global_batch_size=4, seed=0)
  explicit = data.train_loader(config, global_batch_size=4, seed=0,
                               shard_index=0, shard_count=1)
  np.testing.assert_array_equal(np.stack(_take(loader, 2)),
                                np.stack(_take(explicit, 2)))


def test_eval_batches_cover_each_index_once_in_order_with_padding(config):
  source = data.get_data_source(config, "test")
  batches = list(data.eval_batches(config, "test", batch_size=3))
  assert len(batches) == 3  # ceil(7 / 3)
  for batch in batches:
    assert batch["image"].shape == (3, RESOLUTION, RESOLUTION, 3)
    assert batch["image"].dtype == np.uint8
    assert batch["index"].dtype == np.int32
    assert batch["mask"].dtype == bool
  index = np.concatenate([b["index"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  images = np.concatenate([b["image"] for b in batches])
  np.testing.assert_array_equal(index, [0, 1, 2, 3, 4, 5, 6, -1, -1])
  np.testing.assert_array_equal(mask, [True] * 7 + [False] * 2)
  np.testing.assert_array_equal(
      images[:7], np.stack([source[i]["image"] for i in range(7)]))
  assert not images[7:].any()
  again = list(data.eval_batches(config, "test", batch_size=3))
  np.testing.assert_array_equal(
      np.concatenate([b["image"] for b in again]), images)


def test_eval_batches_split_each_global_batch_over_processes(config):
  whole = list(data.eval_batches(config, "test", batch_size=4))
  halves = [list(data.eval_batches(config, "test", batch_size=4,
                                   shard_index=p, shard_count=2))
            for p in range(2)]
  assert len(halves[0]) == len(halves[1]) == len(whole) == 2
  for b, batch in enumerate(whole):
    for key in ("image", "index", "mask"):
      np.testing.assert_array_equal(
          np.concatenate([halves[0][b][key], halves[1][b][key]]), batch[key])
  np.testing.assert_array_equal(halves[1][1]["index"], [6, -1])


def test_eval_batches_num_images_prefix_and_errors(config):
  batches = list(data.eval_batches(config, "train", batch_size=2,
                                   num_images=5))
  np.testing.assert_array_equal(
      np.concatenate([b["index"] for b in batches]), [0, 1, 2, 3, 4, -1])
  with pytest.raises(ValueError, match=r"num_images=8 must lie in \[1, 7\]"):
    data.eval_batches(config, "test", batch_size=2, num_images=8)
  with pytest.raises(ValueError, match="batch_size must be positive"):
    data.eval_batches(config, "test", batch_size=0)
  with pytest.raises(ValueError, match="valid splits are"):
    data.eval_batches(config, "val", batch_size=2)


def test_worker_processes_deliver_the_same_batches(config):
  worker_config = config.copy_and_resolve_references()
  worker_config.num_workers = 1
  in_process = data.train_loader(config, global_batch_size=4, seed=9,
                                 shard_index=0, shard_count=1)
  with_worker = data.train_loader(worker_config, global_batch_size=4, seed=9,
                                  shard_index=0, shard_count=1)
  np.testing.assert_array_equal(np.stack(_take(with_worker, 6)),
                                np.stack(_take(in_process, 6)))
