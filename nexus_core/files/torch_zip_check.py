"""Check a torch zip checkpoint's storage records against the tensors that use them, before it is memory-mapped.

Loading with mmap=True maps each storage at its record's offset with the size the pickle declares, without
checking that the record holds that many bytes: a record cut short (a damaged download, another tool's rewrite)
reads the next record's bytes as weights, and the model loads "fine". Here the pickle is read by torch's own
weights-only unpickler with storages that own no memory (the meta device), which gives each storage's declared
size and checks each tensor's extent inside its storage; the zip directory gives each record's real size.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import NexusError


def storage_needs(zf: zipfile.ZipFile, pkl_name: str, path: Path) -> dict[str, int]:
    """{storage key: bytes the pickle says it holds}; tensors that reach outside their storage are refused."""
    from torch._weights_only_unpickler import Unpickler

    needs: dict[str, int] = {}

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) == 5):
            raise NexusError(f"{path}: an unexpected storage reference in its pickle (not a torch checkpoint)")
        _, storage_type, key, _, numel = pid
        dtype = storage_type.dtype if hasattr(storage_type, "dtype") else storage_type
        key = key.decode() if isinstance(key, bytes) else str(key)
        nbytes = int(numel) * torch.empty((), dtype=dtype).element_size()
        needs[key] = nbytes
        return torch.storage.TypedStorage(wrap_storage=torch.UntypedStorage(nbytes, device="meta"), dtype=dtype,
                                          _internal=True)

    unpickler = Unpickler(io.BytesIO(zf.read(pkl_name)), encoding="utf-8")
    unpickler.persistent_load = persistent_load
    try:
        unpickler.load()
    except NexusError:
        raise
    except pickle.UnpicklingError as e:  # the same refusal torch.load(weights_only=True) would give
        raise NexusError(f"{path} holds objects other than tensors and was refused (weights_only loading): "
                         f"{str(e)[:300]}") from None
    except (RuntimeError, ValueError, TypeError, AttributeError) as e:
        raise NexusError(f"{path}: a tensor in its pickle does not fit its storage, or the pickle is damaged "
                         f"({str(e).splitlines()[0][:200]})") from None
    return needs


def check_torch_zip(path) -> None:
    """Refuse a torch zip checkpoint whose storage records are missing, compressed, or shorter than the storages
    the pickle declares (naming the file and the record)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            pkl = next((n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pkl is None:
                raise NexusError(f"{path} is a zip file but not a torch checkpoint (no data.pkl)")
            prefix = pkl[: -len("data.pkl")]
            for key, nbytes in storage_needs(zf, pkl, path).items():
                info = infos.get(f"{prefix}data/{key}")
                if info is None:
                    raise NexusError(f"{path}: storage record data/{key} is missing (the file is damaged)")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise NexusError(f"{path}: storage record data/{key} is compressed; torch checkpoints store "
                                     "records uncompressed (the file was rewritten by another tool)")
                if info.file_size < nbytes:
                    raise NexusError(f"{path}: storage record data/{key} holds {info.file_size} bytes but its "
                                     f"tensors need {nbytes}: the file is damaged; download it again")
    except zipfile.BadZipFile as e:
        raise NexusError(f"{path} is not a readable torch checkpoint ({e})") from None
