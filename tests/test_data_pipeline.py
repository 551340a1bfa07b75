"""grain pipelines: the sharded, shuffled, checkpointable training stream and
the ordered, padded evaluation batches."""

import collections
import itertools

import grain
import numpy as np
import orbax.checkpoint as ocp
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


def _take(loader_or_iterator, count):
  iterator = (iter(loader_or_iterator)
              if isinstance(loader_or_iterator, grain.DataLoader)
              else loader_or_iterator)
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


def test_shards_are_disjoint_and_together_cover_an_epoch(config,
                                                         train_images):
  seen = []
  for shard_index in range(2):
    loader = data.train_loader(config, global_batch_size=4, seed=3,
                               shard_index=shard_index, shard_count=2)
    batches = _take(loader, 2 * TRAIN_SIZE // 4)  # Two epochs of the shard.
    ids = list(itertools.chain.from_iterable(
        _ids(images, train_images) for images in batches))
    half = TRAIN_SIZE // 2
    assert len(set(ids[:half])) == half  # One epoch: each shard image once.
    assert set(ids[half:]) == set(ids[:half])  # Same shard every epoch.
    seen.append(set(ids[:half]))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(TRAIN_SIZE))


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


def test_restored_iterator_state_yields_identical_next_batches(config):
  loader = data.train_loader(config, global_batch_size=4, seed=11,
                             shard_index=0, shard_count=1)
  iterator = iter(loader)
  _take(iterator, 3)
  state = iterator.get_state()
  expected = _take(iterator, 7)  # Crosses an epoch boundary (5 per epoch).
  fresh = iter(data.train_loader(config, global_batch_size=4, seed=11,
                                 shard_index=0, shard_count=1))
  fresh.set_state(state)
  np.testing.assert_array_equal(np.stack(_take(fresh, 7)), np.stack(expected))


def test_iterator_checkpoints_through_orbax_with_grain_handler(config,
                                                               tmp_path):
  def make_iterator():
    return iter(data.train_loader(config, global_batch_size=2, seed=2,
                                  shard_index=0, shard_count=1))
  iterator = make_iterator()
  _take(iterator, 4)
  with ocp.CheckpointManager(tmp_path / "ckpt",
                             item_names=("data",)) as manager:
    manager.save(4, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
  expected = _take(iterator, 6)
  restored = make_iterator()
  with ocp.CheckpointManager(tmp_path / "ckpt",
                             item_names=("data",)) as manager:
    manager.restore(4, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(restored)))
  np.testing.assert_array_equal(np.stack(_take(restored, 6)),
                                np.stack(expected))


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
