"""Whether llama.cpp may repack weights into its extra CPU layouts: decided by the build, not the CPU.

ggml's AMX int8 kernels crashed on Gemma 3 on AMX machines of this kind, so the runtime turns the extra
buffer types off where the build compiled those kernels. The build `make setup` and the llama-cpp-cpu
image use (portable AVX2/FMA/F16C flags, runtime/Dockerfile) compiles none on any CPU, so weight
repacking stays on everywhere, AMX CPUs included.
"""

from __future__ import annotations

import llama_cpp

from localmodel_runtime.backends.llama.params import extra_buffers
from tests.support.model_configs import model_config


class FakeLib:
    def __init__(self, info: str) -> None:
        self.info = info

    def llama_print_system_info(self) -> bytes:
        return self.info.encode()


NATIVE_ON_AMX = "CPU : SSE3 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 | "
PORTABLE = "CPU : SSE3 = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | REPACK = 1 | "


def test_a_build_with_amx_kernels_turns_the_extra_layouts_off_unless_asked() -> None:
    assert extra_buffers(FakeLib(NATIVE_ON_AMX), model_config()) is False
    assert extra_buffers(FakeLib(PORTABLE), model_config()) is True
    assert extra_buffers(FakeLib(NATIVE_ON_AMX), model_config(options=["extra_buffers:true"])) is True
    assert extra_buffers(FakeLib(PORTABLE), model_config(options=["extra_buffers:off"])) is False


def test_the_installed_build_repacks_and_has_no_amx_kernels() -> None:
    info = llama_cpp.llama_print_system_info().decode()
    assert "REPACK = 1" in info and "AMX_INT8 = 1" not in info, info
    assert extra_buffers(llama_cpp, model_config()) is True
