"""AutoTuner.selection_generation(): when a memoized choose_one answer stays valid."""

import json
import threading

import pytest
import torch

from flashinfer.autotuner import (
    AutoTuner,
    DynamicTensorSpec,
    TunableRunner,
    TuningConfig,
    autotune,
)


class DummyRunner(TunableRunner):
    def get_valid_tactics(self, inputs, profile):
        return [0, 1]

    def forward(self, inputs, tactic: int = -1, do_preparation: bool = False, **kwargs):
        return inputs[0]


@pytest.fixture
def tuner():
    tuner = AutoTuner.get()
    tuner.clear_cache()
    yield tuner
    tuner.clear_cache()


def test_stable_while_nothing_changes(tuner):
    generation = tuner.selection_generation()
    assert generation is not None
    assert tuner.selection_generation() == generation
    inputs = [torch.empty(4, 8)]
    assert (
        tuner.choose_one("dummy_op", [DummyRunner()], TuningConfig(), inputs)[1] == -1
    )
    assert tuner.selection_generation() == generation  # a lookup changes nothing


def test_none_where_choose_one_must_answer(tuner):
    with autotune(True):
        assert tuner.selection_generation() is None
    with autotune(False, skip_ops={"dummy_op"}):
        assert tuner.selection_generation() is None
    with autotune(False, tuning_buckets=(1, 2, 4)):
        assert tuner.selection_generation() is None
    with autotune(False, round_up=True):
        assert tuner.selection_generation() is None
    assert tuner.selection_generation() is not None


def test_changes_on_context_entry_and_exit(tuner):
    outside = tuner.selection_generation()
    with autotune(False):
        inside = tuner.selection_generation()
        assert inside is not None and inside != outside
    after = tuner.selection_generation()
    assert after not in (outside, inside)


def test_tuning_on_another_thread_invalidates(tuner):
    outside = tuner.selection_generation()
    entered, leave = threading.Event(), threading.Event()

    def tune() -> None:
        with autotune(True):
            entered.set()
            leave.wait(10)

    worker = threading.Thread(target=tune)
    worker.start()
    assert entered.wait(10)
    assert tuner.selection_generation() is None  # tuning mode is process-wide
    leave.set()
    worker.join()
    assert tuner.selection_generation() not in (None, outside)


def test_changes_when_winners_change(tuner):
    generation = tuner.selection_generation()
    tuner.clear_cache()
    cleared = tuner.selection_generation()
    assert cleared != generation
    # a winner written straight into the cache, as tests and tools do
    config = TuningConfig(
        dynamic_tensor_specs=(DynamicTensorSpec((0,), (0,), (1, 2), lambda m: m),)
    )
    key = AutoTuner._get_cache_key(
        "dummy_op",
        DummyRunner(),
        ((2, 8),),
        config,
        DummyRunner().get_cache_key_extras([]),
    )
    tuner.profiling_cache[key] = (1, None)
    assert tuner.selection_generation() != cleared


def test_changes_when_configs_load(tuner, tmp_path):
    path = tmp_path / "configs.json"
    tuner.save_configs(str(path))
    configs = json.loads(path.read_text())
    configs[str(("dummy_op", "DummyRunner", ((2, 8),)))] = ["DummyRunner", 1]
    path.write_text(json.dumps(configs))
    before = tuner.selection_generation()
    assert tuner.load_configs(str(path))
    assert tuner.selection_generation() != before


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="tuning times kernels on a CUDA GPU"
)
def test_changes_when_tuning_publishes_a_winner(tuner):
    inputs = [torch.empty(4, 8, device="cuda")]
    with autotune(True):
        tuner.choose_one("dummy_op", [DummyRunner()], TuningConfig(), inputs)
        published = len(tuner.profiling_cache)
    assert published == 1
    generation = tuner.selection_generation()
    runner, tactic = tuner.choose_one(
        "dummy_op", [DummyRunner()], TuningConfig(), inputs
    )
    assert tactic in (0, 1)
    assert tuner.selection_generation() == generation
