"""A recording stand-in for the ``tensorrt`` module (TensorRT 10 Python API), for tests only.

Not TensorRT: no engine is built or run. Every method checks its argument *types* against
the TensorRT 10 Python API reference (pyCore/pyInt8 docs; enums are real enums, so a string
where ``trt.BuilderFlag`` belongs fails) and appends ``(name, args)`` to ``calls``. The
builder simulates what TensorRT does with an INT8 calibrator during
``build_serialized_network`` (read the cache; else ``get_batch`` until None, with the
pybind11 trampoline's behaviour of printing an exception and reading it as "no more data";
then ``write_calibration_cache``), so a calibrator that loses batches can be detected.
"""

from __future__ import annotations

import enum
import importlib.machinery
import sys
import types


class Recorder:
    """Base of the fakes: ``_call(name, args, types)`` type-checks and records."""

    def __init__(self, log: list, prefix: str) -> None:
        self._log, self._prefix = log, prefix

    def _call(self, method: str, args: tuple, expected: tuple) -> None:
        if len(args) != len(expected):
            raise TypeError(f"{self._prefix}.{method}() takes {len(expected)} arguments, got {len(args)}")
        for i, (arg, want) in enumerate(zip(args, expected)):
            if not isinstance(arg, want) or (want is int and isinstance(arg, bool)):
                raise TypeError(f"{self._prefix}.{method}(): argument {i} is {type(arg).__name__}, "
                                f"expected {getattr(want, '__name__', want)}")
        self._log.append((f"{self._prefix}.{method}", args))


def make_module(version: str = "10.13.2", *, set_address_ok: bool = True, parse_ok: bool = True):
    """A fresh fake ``tensorrt`` module and its call log."""
    log: list = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    # torch.export's dynamo looks every skiplisted library up with importlib.util.find_spec.
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None, origin=__file__)
    major = int(version.split(".")[0])
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    flags = "TF32" if major >= 11 else "FP16 INT8 TF32"
    trt.BuilderFlag = enum.Enum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0,
                                                                                        "STRONGLY_TYPED": 1})
    trt.TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    trt.DataType = enum.Enum("DataType", "FLOAT HALF INT8")

    class Logger:
        WARNING, VERBOSE, INFO = 2, 4, 3

        def __init__(self, level: int) -> None:
            if level not in (2, 3, 4):
                raise TypeError("Logger(min_severity)")

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            self._base_initialised = True  # pybind11 trampolines need the base __init__

    class HostMemory(bytes):
        pass

    class Tensor:
        def __init__(self, name: str, shape: tuple) -> None:
            self.name, self.shape = name, shape

    class Network(Recorder):
        num_inputs = 1

        def get_input(self, index):
            self._call("get_input", (index,), (int,))
            return Tensor("images", (-1, 3, 300, 300))

    class Profile(Recorder):
        def set_shape(self, name, lo, opt, hi):
            self._call("set_shape", (name, lo, opt, hi), (str, tuple, tuple, tuple))
            if not all(len(s) == 4 for s in (lo, opt, hi)) or not lo[0] <= opt[0] <= hi[0]:
                raise ValueError("set_shape: need 4-d shapes with min <= opt <= max")

    class TimingCache(Recorder):
        def __init__(self, log, data: bytes) -> None:
            super().__init__(log, "timing_cache")
            self.data = data

        def serialize(self):
            self._call("serialize", (), ())
            return HostMemory(self.data + b"+timed")

    class Config(Recorder):
        def __init__(self, log) -> None:
            super().__init__(log, "config")
            self.flags, self.profiles, self._calibrator, self._cache = set(), [], None, None

        def set_memory_pool_limit(self, pool, size):
            self._call("set_memory_pool_limit", (pool, size), (trt.MemoryPoolType, int))

        def set_flag(self, flag):
            self._call("set_flag", (flag,), (trt.BuilderFlag,))
            self.flags.add(flag)

        def clear_flag(self, flag):
            self._call("clear_flag", (flag,), (trt.BuilderFlag,))
            self.flags.discard(flag)

        def add_optimization_profile(self, profile):
            self._call("add_optimization_profile", (profile,), (Profile,))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile):
            self._call("set_calibration_profile", (profile,), (Profile,))
            return True

        def create_timing_cache(self, data):
            self._call("create_timing_cache", (data,), (bytes,))
            return TimingCache(self._log, bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self._call("set_timing_cache", (cache, ignore_mismatch), (TimingCache, bool))
            self._cache = cache
            return True

        def get_timing_cache(self):
            self._call("get_timing_cache", (), ())
            return self._cache

        @property
        def int8_calibrator(self):
            return self._calibrator

        @int8_calibrator.setter
        def int8_calibrator(self, value):
            if not isinstance(value, IInt8EntropyCalibrator2) or not getattr(value, "_base_initialised", False):
                raise TypeError("int8_calibrator: incompatible type (needs an initialised IInt8Calibrator subclass)")
            self._log.append(("config.int8_calibrator=", (value,)))
            self._calibrator = value

    class Builder(Recorder):
        def __init__(self, logger) -> None:
            super().__init__(log, "builder")
            self._call("__init__", (logger,), (Logger,))
            self.calibration_batches = 0

        def create_builder_config(self):
            self._call("create_builder_config", (), ())
            return Config(log)

        def create_network(self, flags):
            self._call("create_network", (flags,), (int,))
            return Network(log, "network")

        def create_optimization_profile(self):
            self._call("create_optimization_profile", (), ())
            return Profile(log, "profile")

        def build_serialized_network(self, network, config):
            self._call("build_serialized_network", (network, config), (Network, Config))
            calibrator = config.int8_calibrator
            if calibrator is not None and trt.BuilderFlag.INT8 in config.flags:
                self._calibrate(calibrator)
            return HostMemory(b"ENGINE")

        def _calibrate(self, cal) -> None:
            """What TensorRT does with the calibrator (exceptions swallowed as the trampoline does)."""
            if cal.read_calibration_cache():
                return
            cal.get_batch_size()
            while True:
                try:
                    pointers = cal.get_batch(["images"])
                except Exception as exc:  # noqa: BLE001 - the trampoline prints it and returns False
                    print(f"[TensorRT] get_batch raised {exc!r}", file=sys.stderr)
                    pointers = None
                if not pointers:
                    break
                if not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in pointers):
                    raise TypeError("get_batch must return a list of int device pointers")
                self.calibration_batches += 1
            cal.write_calibration_cache(HostMemory(b"TRT-1013-EntropyCalibration2\nimages: 3c010a14\n"))

    class OnnxParser(Recorder):
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger) -> None:
            super().__init__(log, "parser")
            self._call("__init__", (network, logger), (Network, Logger))

        def parse_from_file(self, path):
            self._call("parse_from_file", (path,), (str,))
            return parse_ok

        def get_error(self, index):
            return "In node 3 (Conv):\nINVALID_NODE"

    class Context(Recorder):
        def set_input_shape(self, name, shape):
            self._call("set_input_shape", (name, shape), (str, tuple))
            return True

        def get_tensor_shape(self, name):
            return (2, 10, 4) if name == "boxes" else (2, 10, 91)

        def set_tensor_address(self, name, pointer):
            self._call("set_tensor_address", (name, pointer), (str, int))
            return set_address_ok

        def execute_async_v3(self, stream_handle):
            self._call("execute_async_v3", (stream_handle,), (int,))
            return True

    class Engine(Recorder):
        num_io_tensors = 3
        max_batch = 64

        def get_tensor_name(self, index):
            return ["images", "boxes", "scores"][index]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "images" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def get_tensor_profile_shape(self, name, index):
            return [(1, 3, 300, 300), (16, 3, 300, 300), (self.max_batch, 3, 300, 300)]

        def create_execution_context(self):
            self._call("create_execution_context", (), ())
            return Context(log, "context")

    class Runtime(Recorder):
        def __init__(self, logger) -> None:
            super().__init__(log, "runtime")
            self._call("__init__", (logger,), (Logger,))

        def deserialize_cuda_engine(self, data):
            self._call("deserialize_cuda_engine", (data,), (bytes,))
            return Engine(log, "engine")

    for obj in (Logger, IInt8EntropyCalibrator2, Builder, OnnxParser, Runtime):
        setattr(trt, obj.__name__, obj)
    return trt, log
