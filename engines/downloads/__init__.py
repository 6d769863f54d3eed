"""Downloads: resumable, verified transfers of model files (queue and sources build on `transfer`)."""

from engines.downloads.names import UnsafeFileName, part_path, safe_join
from engines.downloads.transfer import (
    DiskFull,
    DownloadAuthError,
    DownloadCancelled,
    DownloadNotFound,
    PartInUse,
    TransferFailed,
    TransferProgress,
    TransferResult,
    VerificationFailed,
    download_file,
)

__all__ = [
    "DiskFull",
    "DownloadAuthError",
    "DownloadCancelled",
    "DownloadNotFound",
    "PartInUse",
    "TransferFailed",
    "TransferProgress",
    "TransferResult",
    "UnsafeFileName",
    "VerificationFailed",
    "download_file",
    "part_path",
    "safe_join",
]
