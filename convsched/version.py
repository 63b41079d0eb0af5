"""The convsched version (in tuning records and export manifests; kept equal to pyproject.toml's) and the TVM
releases it is written against (pyproject.toml pins exactly these; a test checks that the two agree)."""
from __future__ import annotations

__version__ = "0.1.0"

# TVM's API moves between releases (0.27: tvm.tirx, tvm.s_tir, sblocks) and tvm-ffi 0.1.15 segfaults when IR is
# serialised: convsched runs on exactly this pair.
TVM_PIN = "0.27.0.post1"
TVM_FFI_PIN = "0.1.14.post1"
PIP_INSTALL = f"pip install 'apache-tvm=={TVM_PIN}' 'apache-tvm-ffi=={TVM_FFI_PIN}'"
# Set to 1 to run on other TVM versions anyway (a warning instead of an ImportError; at your own risk).
IGNORE_ENV = "CONVSCHED_IGNORE_TVM_VERSION"


def tvm_missing(error: BaseException) -> str:
    """What to say when TVM cannot be imported at all."""
    return (f"convsched needs Apache TVM {TVM_PIN} with tvm-ffi {TVM_FFI_PIN}, and importing it failed "
            f"({type(error).__name__}: {error}); install them with: {PIP_INSTALL}")


def tvm_mismatch(tvm_version: str, ffi_version: str) -> str | None:
    """What is wrong with the installed TVM versions, or None if they are the pinned ones."""
    if (tvm_version, ffi_version) == (TVM_PIN, TVM_FFI_PIN):
        return None
    return (f"convsched needs Apache TVM {TVM_PIN} with tvm-ffi {TVM_FFI_PIN}, but this environment has TVM "
            f"{tvm_version} with tvm-ffi {ffi_version}; install the pinned ones with: {PIP_INSTALL} "
            f"(or set {IGNORE_ENV}=1 to try these at your own risk)")
