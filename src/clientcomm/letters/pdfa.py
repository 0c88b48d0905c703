"""PDF/A-2b for a serial-letter run's download (seed 003, step 10).

:class:`PdfaConverter` turns a PDF into PDF/A-2b with Ghostscript (Debian's
``ghostscript`` package), run as a subprocess with a time limit; the output
intent carries an sRGB ICC profile (Ghostscript's own ``srgb.icc``, found under
``/usr/share/ghostscript/*/iccprofiles``, or one the host names).
:func:`check_pdfa` then checks the result with pypdf, whatever produced it:

* the XMP metadata identifies PDF/A part 2, conformance B
  (``pdfaid:part="2"``, ``pdfaid:conformance="B"``);
* the catalog has an output intent (``/GTS_PDFA1``) with an ICC profile;
* every font used on a page (also inside form XObjects and annotations'
  appearances) is embedded;
* the file is not encrypted.

Ghostscript missing or a profile not found is a
:class:`~clientcomm.errors.ConfigurationError` naming what to install;
a conversion that fails or runs over its time is a :class:`PdfaError`.
"""

from __future__ import annotations

import asyncio
import glob
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import attrs
import pypdf
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    PdfObject,
    StreamObject,
)

from clientcomm.errors import ClientCommError, ConfigurationError

__all__ = [
    "PdfaConverter",
    "PdfaError",
    "PdfaReport",
    "check_pdfa",
    "find_icc_profile",
]

log = logging.getLogger("clientcomm.letters")

_ICC_GLOBS = (
    "/usr/share/ghostscript/*/iccprofiles/srgb.icc",
    "/usr/share/ghostscript/*/iccprofiles/default_rgb.icc",
    "/usr/share/color/icc/ghostscript/srgb.icc",
    "/usr/share/color/icc/ghostscript/default_rgb.icc",
)
_PDFAID = "http://www.aiim.org/pdfa/ns/id/"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_STDERR_TAIL = 2000


class PdfaError(ClientCommError):
    """A PDF could not be made into PDF/A, or a file is not the PDF/A it should be
    (``problems`` lists what is wrong)."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message, problems=problems)
        self.problems = problems


def find_icc_profile(configured: str | os.PathLike[str] | None = None) -> Path:
    """The sRGB ICC profile for the output intent: ``configured`` if given,
    else Ghostscript's own.

    Raises:
        ConfigurationError: the configured file does not exist, or none is found.
    """
    if configured is not None:
        path = Path(configured)
        if not path.is_file():
            raise ConfigurationError(f"ICC profile {str(path)!r} not found", path=str(path))
        return path
    for pattern in _ICC_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1])
    raise ConfigurationError(
        "no sRGB ICC profile found for PDF/A: install Debian's ghostscript "
        "(apt-get install ghostscript) or pass icc_profile=",
    )


def _ps_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _definition(icc: Path) -> str:
    """The PostScript prologue declaring the output intent (after Ghostscript's
    ``lib/PDFA_def.ps``, for RGB output)."""
    return f"""%!
/ICCProfile {_ps_string(str(icc))} def
[/_objdef {{icc_PDFA}} /type /stream /OBJ pdfmark
[{{icc_PDFA}} << /N 3 >> /PUT pdfmark
[{{icc_PDFA}} ICCProfile (r) file /PUT pdfmark
[/_objdef {{OutputIntent_PDFA}} /type /dict /OBJ pdfmark
[{{OutputIntent_PDFA}} <<
  /Type /OutputIntent
  /S /GTS_PDFA1
  /DestOutputProfile {{icc_PDFA}}
  /OutputConditionIdentifier (sRGB)
  /Info (sRGB IEC61966-2.1)
>> /PUT pdfmark
[{{Catalog}} << /OutputIntents [ {{OutputIntent_PDFA}} ] >> /PUT pdfmark
"""


@attrs.frozen
class PdfaConverter:
    """Ghostscript as a PDF/A-2b converter.

    ``gs`` is the executable (looked up on ``PATH`` if it is a bare name);
    ``timeout`` bounds one conversion in seconds.

    Raises:
        ConfigurationError: (on :meth:`convert`) Ghostscript or the ICC profile
            is missing, or ``timeout`` is not positive.
    """

    gs: str = "gs"
    icc_profile: str | None = None
    timeout: float = 300.0

    def executable(self) -> str:
        """The Ghostscript executable's path.

        Raises:
            ConfigurationError: not installed.
        """
        found = shutil.which(self.gs)
        if found is None:
            raise ConfigurationError(
                f"Ghostscript ({self.gs!r}) is not installed: PDF/A downloads need it "
                "(Debian: apt-get install ghostscript)",
                gs=self.gs,
            )
        return found

    async def convert(self, source: Path, target: Path) -> None:
        """Write ``source`` (a PDF) to ``target`` as PDF/A-2b, then check it
        (:func:`check_pdfa`); ``target`` is removed again if anything fails.

        Raises:
            ConfigurationError: Ghostscript or the ICC profile missing.
            PdfaError: Ghostscript failed or ran over ``timeout``, or the
                result is not PDF/A-2b.
        """
        if not self.timeout > 0:
            raise ConfigurationError("timeout must be positive", timeout=self.timeout)
        gs = self.executable()
        icc = find_icc_profile(self.icc_profile)
        with tempfile.TemporaryDirectory(prefix="clientcomm-pdfa-") as work:
            definition = Path(work) / "pdfa_def.ps"
            await asyncio.to_thread(definition.write_text, _definition(icc), encoding="latin-1")
            args = [
                gs,
                "-q",
                "-dBATCH",
                "-dNOPAUSE",
                "-dSAFER",
                "-dPDFSTOPONERROR",
                "-sDEVICE=pdfwrite",
                "-dPDFA=2",
                "-dPDFACompatibilityPolicy=1",
                "-sColorConversionStrategy=RGB",
                "-sProcessColorModel=DeviceRGB",
                "-dEmbedAllFonts=true",
                f"--permit-file-read={icc}",
                f"--permit-file-read={definition}",
                f"--permit-file-read={source}",
                f"-sOutputFile={target}",
                str(definition),
                str(source),
            ]
            try:
                await self._run(args)
                await asyncio.to_thread(_check_file, target)
            except BaseException:
                await asyncio.to_thread(target.unlink, missing_ok=True)
                raise

    async def convert_bytes(self, pdf: bytes) -> bytes:
        """:meth:`convert` for a PDF in memory (small files; the run's
        download streams through files)."""
        with tempfile.TemporaryDirectory(prefix="clientcomm-pdfa-") as work:
            source = Path(work) / "in.pdf"
            target = Path(work) / "out.pdf"
            await asyncio.to_thread(source.write_bytes, pdf)
            await self.convert(source, target)
            return await asyncio.to_thread(target.read_bytes)

    async def _run(self, args: list[str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PdfaError(
                f"Ghostscript ran over its time limit of {self.timeout:g}s", problems=("timeout",)
            ) from None
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            tail = (err or out).decode("utf-8", "replace")[-_STDERR_TAIL:]
            log.warning("ghostscript failed (exit %s): %s", proc.returncode, tail)
            raise PdfaError(
                f"Ghostscript failed (exit {proc.returncode}): {tail.strip()[-300:]}",
                problems=("ghostscript",),
            )


def _check_file(path: Path) -> None:
    check_pdfa(path.read_bytes())


@attrs.frozen
class PdfaReport:
    """What :func:`check_pdfa` found in a valid file."""

    part: str
    conformance: str
    pages: int
    fonts: int


def _resolve(value: PdfObject | None) -> PdfObject | None:
    while isinstance(value, IndirectObject):
        value = value.get_object()
    return value


def _pdfaid(xmp: bytes) -> tuple[str | None, str | None]:
    if b"<!DOCTYPE" in xmp or b"<!ENTITY" in xmp:
        return None, None  # XMP has no DTD; refusing one rules out entity expansion
    try:
        root = ElementTree.fromstring(xmp)  # noqa: S314 - no DTD (checked above)
    except ElementTree.ParseError:
        return None, None
    part = conformance = None
    for desc in root.iter(f"{{{_RDF}}}Description"):
        part = part or desc.get(f"{{{_PDFAID}}}part")
        conformance = conformance or desc.get(f"{{{_PDFAID}}}conformance")
    for node in root.iter(f"{{{_PDFAID}}}part"):
        part = part or (node.text or "").strip()
    for node in root.iter(f"{{{_PDFAID}}}conformance"):
        conformance = conformance or (node.text or "").strip()
    return part, conformance


def _fonts_of(resources: PdfObject | None, seen: set[int]) -> Iterator[DictionaryObject]:
    res = _resolve(resources)
    if not isinstance(res, DictionaryObject) or id(res) in seen:
        return
    seen.add(id(res))
    fonts = _resolve(res.get("/Font"))
    if isinstance(fonts, DictionaryObject):
        for ref in fonts.values():
            font = _resolve(ref)
            if isinstance(font, DictionaryObject):
                yield font
                if font.get("/Subtype") == "/Type3":
                    yield from _fonts_of(font.get("/Resources"), seen)
    xobjects = _resolve(res.get("/XObject"))
    if isinstance(xobjects, DictionaryObject):
        for ref in xobjects.values():
            xobj = _resolve(ref)
            if isinstance(xobj, DictionaryObject) and xobj.get("/Subtype") == "/Form":
                yield from _fonts_of(xobj.get("/Resources"), seen)


def _annotation_resources(page: DictionaryObject) -> Iterator[PdfObject | None]:
    annots = _resolve(page.get("/Annots"))
    if not isinstance(annots, ArrayObject):
        return
    for ref in annots:
        annot = _resolve(ref)
        if not isinstance(annot, DictionaryObject):
            continue
        ap = _resolve(annot.get("/AP"))
        if not isinstance(ap, DictionaryObject):
            continue
        for entry in ap.values():
            stream = _resolve(entry)
            if isinstance(stream, DictionaryObject) and "/Resources" in stream:
                yield stream.get("/Resources")


def _embedded(font: DictionaryObject) -> bool:
    subtype = font.get("/Subtype")
    if subtype == "/Type3":
        return True  # glyphs are content streams of the font itself
    if subtype == "/Type0":
        descendants = _resolve(font.get("/DescendantFonts"))
        if not isinstance(descendants, ArrayObject) or not descendants:
            return False
        return all(
            isinstance(d := _resolve(ref), DictionaryObject) and _embedded(d) for ref in descendants
        )
    descriptor = _resolve(font.get("/FontDescriptor"))
    if not isinstance(descriptor, DictionaryObject):
        return False
    return any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))


def check_pdfa(pdf: bytes) -> PdfaReport:
    """Check ``pdf`` is PDF/A-2b as far as this library promises (module docs).

    Raises:
        PdfaError: the file is not a readable PDF, or ``problems`` lists each
            check that failed (``not-pdf``, ``encrypted``, ``no-xmp``,
            ``pdfaid-part``, ``pdfaid-conformance``, ``no-output-intent``,
            ``font-not-embedded:<name>``, ``no-pages``).
    """
    try:
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        encrypted = reader.is_encrypted
    except Exception as exc:  # pypdf raises many kinds for a broken file
        raise PdfaError(f"not a readable PDF: {exc}", problems=("not-pdf",)) from None
    if encrypted:
        raise PdfaError("the PDF is encrypted (PDF/A forbids it)", problems=("encrypted",))
    problems: list[str] = []
    try:
        root = _resolve(reader.trailer["/Root"])
        if not isinstance(root, DictionaryObject):
            raise PdfaError("the PDF has no catalog", problems=("not-pdf",))
        metadata = _resolve(root.get("/Metadata"))
        part = conformance = None
        if not isinstance(metadata, StreamObject):
            problems.append("no-xmp")
        else:
            part, conformance = _pdfaid(metadata.get_data())
            if part != "2":
                problems.append("pdfaid-part")
            if (conformance or "").upper() != "B":
                problems.append("pdfaid-conformance")
        intents = _resolve(root.get("/OutputIntents"))
        ok_intent = False
        if isinstance(intents, ArrayObject):
            for ref in intents:
                intent = _resolve(ref)
                if (
                    isinstance(intent, DictionaryObject)
                    and intent.get("/S") == "/GTS_PDFA1"
                    and _resolve(intent.get("/DestOutputProfile")) is not None
                ):
                    ok_intent = True
        if not ok_intent:
            problems.append("no-output-intent")
        seen: set[int] = set()
        count = 0
        missing: set[str] = set()
        for page in reader.pages:
            sources = [page.get("/Resources"), *_annotation_resources(page)]
            for resources in sources:
                for font in _fonts_of(resources, seen):
                    count += 1
                    if not _embedded(font):
                        missing.add(str(font.get("/BaseFont", "?")))
        problems.extend(f"font-not-embedded:{name}" for name in sorted(missing))
        pages = len(reader.pages)
        if not pages:
            problems.append("no-pages")
    except PdfaError:
        raise
    except Exception as exc:
        raise PdfaError(f"not a readable PDF: {exc}", problems=("not-pdf",)) from None
    if problems:
        raise PdfaError("not PDF/A-2b: " + ", ".join(problems), problems=tuple(problems))
    assert part is not None and conformance is not None
    return PdfaReport(part, conformance.upper(), pages, count)
