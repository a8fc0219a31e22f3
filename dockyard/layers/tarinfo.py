"""Tar headers read strictly: a truncated or corrupt archive is an error, never a short one.

tarfile reports the end of an archive as an (undocumented) header error and
treats *any* header error past the first block as the end too, so a corrupt
or truncated archive would extract partially and "succeed". `StrictTarInfo`
keeps the two real endings, a zero block or EOF exactly on a block boundary
(a stream that simply stops between entries: Go's reader accepts it, and so
does Docker; an empty blob is an empty layer), and makes every other header
error fatal. Pass it as `tarinfo=` to `tarfile.open`.
"""

from __future__ import annotations

import tarfile
from typing import Self

_EOF_HEADER: type[Exception] = vars(tarfile)["EOFHeaderError"]
_EMPTY_HEADER: type[Exception] = vars(tarfile)["EmptyHeaderError"]


class StrictTarInfo(tarfile.TarInfo):
    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _EMPTY_HEADER:
            raise _EOF_HEADER("end of file header") from None
        except _EOF_HEADER:
            raise
        except tarfile.HeaderError as e:
            raise tarfile.ReadError(f"bad header at offset {tarfile_.offset}: {e}") from None
