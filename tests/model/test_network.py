"""The network reproduces the reference exactly; its inputs are checked; the fast paths agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnistnn import ConfigError, NetworkConfig, NeuralNetwork
from mnistnn.model.maths import input_scale
from mnistnn.model.network import initial_weights
from tests.reference import ReferenceNetwork, reference_epoch

ROWS = 1000


def test_input_scale_is_the_reference_formula() -> None:
    levels = np.arange(256)
    np.testing.assert_array_equal(input_scale("float64"), levels / 255.0 * 0.99 + 0.01)
    assert input_scale("float32").dtype == np.float32


def test_legacy_init_equals_global_seed_without_touching_it() -> None:
    before = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the global state
    w_ih, w_ho = initial_weights(NetworkConfig(seed=7))
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    saved = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(7)  # noqa: NPY002 - the reference seeds globally
        expected_ih = np.random.normal(0.0, pow(88, -0.5), (88, 784))  # noqa: NPY002
        expected_ho = np.random.normal(0.0, pow(10, -0.5), (10, 88))  # noqa: NPY002
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    np.testing.assert_array_equal(w_ih, expected_ih)
    np.testing.assert_array_equal(w_ho, expected_ho)


def test_default_init_uses_generator_and_differs_from_legacy() -> None:
    w_ih, _ = initial_weights(NetworkConfig(init="default", seed=7))
    expected = np.random.default_rng(7).normal(0.0, pow(88, -0.5), (88, 784))
    np.testing.assert_array_equal(w_ih, expected)
    assert not np.array_equal(w_ih, initial_weights(NetworkConfig(seed=7))[0])


def test_shapes_and_outputs() -> None:
    net = NeuralNetwork(NetworkConfig(hidden_nodes=20))
    assert net.w_input_hidden.shape == (20, 784)
    assert net.w_hidden_output.shape == (10, 20)
    pixels = np.zeros((3, 784), dtype=np.uint8)
    out = net.query(pixels)
    assert out.shape == (3, 10)
    assert np.all((out > 0) & (out < 1))
    assert net.predict(pixels).shape == (3,)
    assert net.query(pixels[0]).shape == (1, 10)


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_training_equals_reference(mnist_train, dtype: str, tolerance: float) -> None:
    pixels, labels = mnist_train[0][:ROWS], mnist_train[1][:ROWS]
    net = NeuralNetwork(NetworkConfig(dtype=dtype))
    reference = ReferenceNetwork(784, 88, 10, 0.05, *initial_weights(NetworkConfig()))
    reference_epoch(reference, pixels, labels)
    net.train_epoch(pixels, labels)
    assert net.w_input_hidden.dtype == np.dtype(dtype)
    np.testing.assert_allclose(net.w_input_hidden, reference.wih, rtol=0, atol=tolerance)
    np.testing.assert_allclose(net.w_hidden_output, reference.who, rtol=0, atol=tolerance)
    # the weights moved: equality is not the trivial one
    assert np.abs(reference.wih - initial_weights(NetworkConfig())[0]).max() > 1e-3


def test_query_equals_reference_query(mnist_test) -> None:
    net = NeuralNetwork(NetworkConfig(seed=3))
    reference = ReferenceNetwork(784, 88, 10, 0.05, net.w_input_hidden, net.w_hidden_output)
    pixels = mnist_test[0][:50]
    expected = np.stack(
        [reference.query(row / 255.0 * 0.99 + 0.01).ravel() for row in pixels.astype(float)]
    )
    np.testing.assert_allclose(net.query(pixels), expected, rtol=0, atol=1e-13)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_hand_worked_step() -> None:
    """One sample through a 2-2-2 network, worked out with scalars."""
    config = NetworkConfig(input_nodes=2, hidden_nodes=2, output_nodes=2, learning_rate=0.5)
    w_ih = [[0.1, -0.2], [0.3, 0.4]]
    w_ho = [[0.5, -0.6], [0.7, 0.8]]
    net = NeuralNetwork(config, (np.array(w_ih), np.array(w_ho)))
    pixels, label = np.array([[255, 0]], dtype=np.uint8), 1
    x = [255 / 255.0 * 0.99 + 0.01, 0 / 255.0 * 0.99 + 0.01]
    t = [0.01, 1.0]
    h = [_sigmoid(w_ih[j][0] * x[0] + w_ih[j][1] * x[1]) for j in range(2)]
    o = [_sigmoid(w_ho[i][0] * h[0] + w_ho[i][1] * h[1]) for i in range(2)]
    e_o = [t[i] - o[i] for i in range(2)]
    e_h = [w_ho[0][j] * e_o[0] + w_ho[1][j] * e_o[1] for j in range(2)]  # old weights
    new_ho = [
        [w_ho[i][j] + 0.5 * (e_o[i] * o[i] * (1 - o[i]) * h[j]) for j in range(2)] for i in range(2)
    ]
    new_ih = [
        [w_ih[j][k] + 0.5 * (e_h[j] * h[j] * (1 - h[j]) * x[k]) for k in range(2)] for j in range(2)
    ]
    net.train_epoch(pixels, np.array([label]))
    np.testing.assert_allclose(net.w_hidden_output, new_ho, rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.w_input_hidden, new_ih, rtol=0, atol=1e-15)


def test_minibatch_of_one_is_the_reference_and_larger_batches_differ(mnist_train) -> None:
    pixels, labels = mnist_train[0][:300], mnist_train[1][:300]
    per_sample = NeuralNetwork(NetworkConfig())
    per_sample.train_epoch(pixels, labels)
    from mnistnn.model import optim

    w_ih, w_ho = initial_weights(NetworkConfig())
    params = {"w_input_hidden": w_ih, "w_hidden_output": w_ho}
    params |= {"bias_hidden": np.zeros(88), "bias_output": np.zeros(10)}
    # the one mini-batch loop, batches of one: the compiled per-sample loop's weights
    config = NetworkConfig()
    optim.minibatch_epoch(params, {}, pixels, labels, input_scale(), config, config.learning_rate)
    np.testing.assert_allclose(w_ih, per_sample.w_input_hidden, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w_ho, per_sample.w_hidden_output, rtol=0, atol=1e-12)
    batched = NeuralNetwork(NetworkConfig(batch_size=128))  # 300 = 2 x 128 + a batch of 44
    batched.train_epoch(pixels, labels)
    assert np.isfinite(batched.w_input_hidden).all()
    assert np.abs(batched.w_input_hidden - per_sample.w_input_hidden).max() > 1e-4


def test_empty_epoch_changes_nothing() -> None:
    net = NeuralNetwork(NetworkConfig())
    before = net.w_input_hidden.copy()
    net.train_epoch(np.zeros((0, 784), dtype=np.uint8), np.zeros(0, dtype=np.uint8))
    np.testing.assert_array_equal(net.w_input_hidden, before)


def test_backward_query_gives_ten_digit_images(mnist_train) -> None:
    net = NeuralNetwork(NetworkConfig())
    net.train_epoch(mnist_train[0][:3000], mnist_train[1][:3000])
    images = net.backward_query_images()
    assert images.shape == (10, 28, 28)
    assert images.dtype == np.uint8
    assert images.min() <= 3
    assert images.max() >= 252
    # each digit's image differs from the others
    flat = images.reshape(10, -1).astype(float)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(10) for j in range(i)) > 1.0


def test_backward_query_images() -> None:
    net = NeuralNetwork(NetworkConfig())
    image = net.backward_query(3)
    assert image.shape == (784,)
    assert image.min() == pytest.approx(0.01) and image.max() == pytest.approx(0.99)
    with pytest.raises(ValueError, match="label must be in 0..9, got 10"):
        net.backward_query(10)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_nodes", 0, "hidden_nodes must be >= 1, got 0"),
        ("hidden_nodes", 2.5, "hidden_nodes must be an integer, got 2.5"),
        ("learning_rate", 0.0, "learning_rate must be a finite number > 0, got 0.0"),
        ("learning_rate", -0.1, "learning_rate must be a finite number > 0, got -0.1"),
        ("learning_rate", float("nan"), "learning_rate must be a finite number > 0, got nan"),
        ("dtype", "float16", "dtype must be one of float64, float32; got 'float16'"),
        ("init", "xavier", "init must be one of legacy, default; got 'xavier'"),
        ("batch_size", 0, "batch_size must be >= 1, got 0"),
        ("seed", -1, r"seed must be in 0..2\*\*32-1, got -1"),
    ],
)
def test_invalid_config(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        NetworkConfig(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigError)


def test_config_round_trips_through_json() -> None:
    import json

    config = NetworkConfig(hidden_nodes=50, learning_rate=0.1, dtype="float32", batch_size=32)
    assert NetworkConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown configuration field"):
        NetworkConfig.from_dict({"hidden": 3})


def test_bad_training_inputs() -> None:
    net = NeuralNetwork(NetworkConfig())
    good = np.zeros((2, 784), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"labels must be in 0..9, got 10"):
        net.train_epoch(good, np.array([1, 10]))
    with pytest.raises(ValueError, match=r"labels must be in 0..9, got -1"):
        net.train_epoch(good, np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"pixels must have shape \(n, 784\), got \(2, 785\)"):
        net.train_epoch(np.zeros((2, 785), dtype=np.uint8), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\), got \(3,\)"):
        net.train_epoch(good, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="pixels must be integers in 0..255"):
        net.query(np.full((1, 784), 256))
    with pytest.raises(ValueError, match="w_input_hidden has shape"):
        NeuralNetwork(NetworkConfig(), (np.zeros((10, 10)), np.zeros((10, 88))))


@pytest.mark.slow
def test_reference_epoch_one_numbers_on_full_data(mnist_train, mnist_test) -> None:
    """Seed 0, legacy init, one epoch on all 60,000 rows: the reference's 0.9450 / 0.7952."""
    from mnistnn.model.metrics import accuracy, confident_score

    net = NeuralNetwork(NetworkConfig())
    net.train_epoch(*mnist_train)
    outputs = net.query(mnist_test[0])
    assert f"{accuracy(outputs, mnist_test[1]):.4f}" == "0.9450"
    assert f"{confident_score(outputs, mnist_test[1]):.4f}" == "0.7952"


# -- the two-thread engine: bit-identical to the one-thread loop --------------------------------
def _engine_weights(pixels, labels, dtype: str, hidden: int, threads: int | None):
    from mnistnn.model import engine

    start = initial_weights(NetworkConfig(hidden_nodes=hidden, dtype=dtype))
    return engine.sgd_epoch(pixels, labels, input_scale(dtype), *start, 0.05, threads=threads)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", [88, 7, 101])
def test_two_threads_and_auto_are_bit_identical_to_one(
    mnist_train, monkeypatch: pytest.MonkeyPatch, dtype: str, hidden: int
) -> None:
    from mnistnn.model import engine

    pixels, labels = mnist_train[0][:2000], mnist_train[1][:2000]
    one = _engine_weights(pixels, labels, dtype, hidden, threads=1)
    two = _engine_weights(pixels, labels, dtype, hidden, threads=2)
    # auto in many small chunks: it switches loops several times within the epoch
    monkeypatch.setattr(engine, "CHUNK_ROWS", 300)
    monkeypatch.setattr(engine, "PROBE_ROWS", 100)
    monkeypatch.setattr(engine, "PROBE_EVERY", 1)
    monkeypatch.setattr(engine, "_auto_states", {})
    monkeypatch.setattr(engine, "available_cpus", lambda: 2)
    monkeypatch.delenv(engine.THREADS_ENV, raising=False)
    auto = _engine_weights(pixels, labels, dtype, hidden, threads=None)
    assert engine.last_auto_rows[1] > 0 and engine.last_auto_rows[2] > 0
    for got in (two, auto):
        assert got[0].dtype == np.dtype(dtype) and got[1].dtype == np.dtype(dtype)
        assert got[0].flags.c_contiguous and got[1].flags.c_contiguous
        assert np.array_equal(got[0], one[0]) and np.array_equal(got[1], one[1])
    assert np.abs(one[0] - initial_weights(NetworkConfig(hidden_nodes=hidden))[0]).max() > 1e-3


def _scalar_order_epoch(pixels, labels, w_ih, w_ho, lr: float = 0.05):
    """The reference epoch with every sum written out in the engine's order (k, then j, then i),
    one numpy lane per unit: an oracle for the engine's bits that shares none of its code."""
    w_t, w_ho_t = w_ih.T.copy(), w_ho.T.copy()  # (784, hidden), (hidden, 10)
    scale = input_scale("float64")
    for row, label in zip(pixels, labels, strict=True):
        x = scale[row]
        hidden = np.zeros(w_t.shape[1])
        for k in range(w_t.shape[0]):
            hidden = hidden + w_t[k] * x[k]
        active = np.array([1.0 / (1.0 + math.exp(-value)) for value in hidden])
        total = np.zeros(w_ho_t.shape[1])
        for j in range(w_ho_t.shape[0]):
            total = total + w_ho_t[j] * active[j]
        output = np.array([1.0 / (1.0 + math.exp(-value)) for value in total])
        target = np.full(output.shape, 0.01)
        target[label] = 1.0
        error = target - output
        delta_output = error * output * (1.0 - output)
        error_hidden = np.array([_ordered_dot(w_ho_t[j], error) for j in range(len(active))])
        delta_hidden = error_hidden * active * (1.0 - active)
        for j in range(w_ho_t.shape[0]):
            w_ho_t[j] = w_ho_t[j] + lr * (delta_output * active[j])
        for k in range(w_t.shape[0]):
            w_t[k] = w_t[k] + lr * (delta_hidden * x[k])
    return w_t.T, w_ho_t.T


def _ordered_dot(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a[0] * b[0])
    for i in range(1, len(a)):
        total += float(a[i] * b[i])
    return total


@pytest.mark.parametrize("hidden", [88, 7])
@pytest.mark.parametrize("threads", [1, 2])
def test_engine_bits_are_the_scalar_order_loop(mnist_train, hidden: int, threads: int) -> None:
    """The vectorised engine (padded strips, two threads) does each unit's arithmetic exactly
    as the plain per-sample loop: no fused multiply-add, no reordered sum."""
    from mnistnn.model import engine

    pixels, labels = mnist_train[0][:150], mnist_train[1][:150]
    start = initial_weights(NetworkConfig(hidden_nodes=hidden))
    expected = _scalar_order_epoch(pixels, labels, *start)
    got = engine.sgd_epoch(pixels, labels, input_scale("float64"), *start, 0.05, threads=threads)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_threads_bit_identical_after_a_full_epoch(mnist_train, dtype: str) -> None:
    one = _engine_weights(*mnist_train, dtype, 88, threads=1)
    for threads in (2, None):
        got = _engine_weights(*mnist_train, dtype, 88, threads=threads)
        assert np.array_equal(got[0], one[0]) and np.array_equal(got[1], one[1])


def test_thread_switch(monkeypatch: pytest.MonkeyPatch, mnist_train) -> None:
    import threading

    from mnistnn.model import engine

    monkeypatch.setattr(engine, "available_cpus", lambda: 2)
    monkeypatch.delenv(engine.THREADS_ENV, raising=False)
    assert engine.thread_mode() == 0  # auto
    assert engine.thread_mode(1) == 1 and engine.thread_mode(8) == 2
    for setting, mode in (("1", 1), ("2", 2), ("auto", 0), (" AUTO ", 0), ("", 0)):
        monkeypatch.setenv(engine.THREADS_ENV, setting)
        assert engine.thread_mode() == mode
    assert engine.thread_mode(2) == 2  # the keyword wins over the environment
    monkeypatch.setenv(engine.THREADS_ENV, "two")
    with pytest.raises(ConfigError, match="MNISTNN_THREADS='two': expected 1, 2 or auto"):
        engine.thread_mode()
    with pytest.raises(ConfigError, match="threads must be 1 or more, got 0"):
        engine.thread_mode(0)
    monkeypatch.setattr(engine, "available_cpus", lambda: 1)
    monkeypatch.delenv(engine.THREADS_ENV)
    assert engine.thread_mode() == 1

    # forced to one thread, training starts no thread at all
    def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("a thread was started")

    monkeypatch.setattr(engine, "available_cpus", lambda: 2)
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    pixels, labels = mnist_train[0][:200], mnist_train[1][:200]
    monkeypatch.setenv(engine.THREADS_ENV, "1")
    NeuralNetwork().train_epoch(pixels, labels)
    monkeypatch.delenv(engine.THREADS_ENV)
    NeuralNetwork().train_epoch(pixels, labels, threads=1)
    with pytest.raises(AssertionError, match="a thread was started"):
        NeuralNetwork().train_epoch(pixels, labels, threads=2)


def test_two_threads_never_wait_forever(monkeypatch: pytest.MonkeyPatch, mnist_train) -> None:
    import threading

    from mnistnn.model import engine_sync, engine_threads

    pixels, labels = mnist_train[0][:200], mnist_train[1][:200]

    def cannot_start(*args: object, **kwargs: object) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:  # the helper cannot start: raise, spin never
        patch.setattr(threading.Thread, "start", cannot_start)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            NeuralNetwork().train_epoch(pixels, labels, threads=2)

    # a thread whose partner aborted stops waiting at the next rendezvous
    scale = input_scale("float64")
    w_ih, w_ho = initial_weights(NetworkConfig())
    slab = np.zeros((784, 44))
    slab[:, :44] = w_ih[:44].T
    w_ho_t = np.zeros((88, 12))
    w_ho_t[:, :10] = w_ho.T
    activations = np.zeros((2, 88))
    flags = np.zeros(engine_sync.FLAG_SLOTS, dtype=np.int64)
    flags[engine_sync.ABORT] = 1
    lr = np.array([0.05])
    args = (pixels, labels, scale, slab, w_ho_t, 10, activations, lr, flags)
    assert engine_threads._sgd_units(0, 2, 0, 44, *args) == 1
