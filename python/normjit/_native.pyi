"""Type stubs of the normjit._native extension (see normjit/__init__.py)."""

from os import PathLike
from typing import Any, List, Optional, Union

__version__: str

class CompileError(ValueError): ...
class UnsupportedError(ValueError): ...

class TensorSig:
    name: str
    role: str  # "in", "out" or "inout"
    dtype: str  # "f32", "bf16", "f16"
    dims: List[str]

class ParamSig:
    name: str
    dtype: str  # "f32", or "u32" for a seed
    default: Optional[float]

class Signature:
    name: str
    dims: List[str]
    tensors: List[TensorSig]
    params: List[ParamSig]
    @property
    def outputs(self) -> List[str]: ...

class Kernel:
    name: str
    signature: Signature
    source: str
    origin: str
    ir: str
    compiles: int
    def __call__(self, **tensors_and_params: Any) -> Any: ...
    def foreach(self, **tensor_lists_and_params: Any) -> None: ...
    def with_storage(self, storage: str) -> Kernel: ...
    def grad(
        self,
        wrt: List[str],
        saved: Optional[List[str]] = None,
        state: Optional[List[str]] = None,
        inplace: Optional[List[str]] = None,
    ) -> Kernel: ...
    def explain(self, **dims: int) -> str: ...
    def asm(self, clif: bool = False, **dims: int) -> str: ...

def compile(source: str, name: str = "<source>") -> Kernel: ...
def load(path: Union[str, PathLike]) -> Kernel: ...
def library(name: str) -> Kernel: ...
def library_names() -> List[str]: ...
def library_source(name: str) -> str: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _increment_steps(steps: List[Any], by: float = 1.0) -> List[float]: ...
