"""Content credentials: what made each cut, marked in a way machines can read.

Every cut a render writes says what made it, in three places that hold the same facts
(`CredentialFacts`, one record):

- a C2PA manifest embedded in the file (`c2pa-python`), signed: stitchcraft as the
  producing tool, the storyboard's SHA-256, and per shot whether it was generated
  (IPTC digital source type ``trainedAlgorithmicMedia``, with engine, model and seed), a
  title card stitchcraft drew (``digitalCreation``), or footage or a still the user
  supplied (no source type: stitchcraft cannot vouch for where they came from);
- the container's ``comment`` (one sentence) and ``description`` (the facts as JSON)
  tags, muxed with the cut;
- a sidecar, ``<cut>.credentials.json``, with the signer and the digest of the file.

The signer is the certificate chain and private key named by ``STITCHCRAFT_C2PA_CERT``
and ``STITCHCRAFT_C2PA_KEY`` (PEM files). Without them the cut is signed with a
development certificate made in the cache folder, named "stitchcraft development
certificate - not trusted", and the render warns: the manifest still shows tampering,
but names no one a validator trusts.

Sealing happens on the verified temporary file, before it is renamed into place: the
signed copy is read back and must validate, or nothing is published. Matroska cannot
carry a C2PA manifest; an ``.mkv`` cut gets the tags and the sidecar only, with a
warning.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ConfigError, VerificationError
from .store import sha256_file

if TYPE_CHECKING:
    from .select.choose import Selection
    from .storyboard.load import LoadedStoryboard

CERT_ENV = "STITCHCRAFT_C2PA_CERT"
KEY_ENV = "STITCHCRAFT_C2PA_KEY"
TSA_ENV = "STITCHCRAFT_C2PA_TSA_URL"
DEVELOPMENT_NAME = "stitchcraft development certificate - not trusted"
DEVELOPMENT_CA_NAME = "stitchcraft development CA - not trusted"
SIDECAR_SUFFIX = ".credentials.json"
ASSERTION = "org.stitchcraft.credentials"
FACTS_VERSION = 1

_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# What each kind of shot is, as an IPTC digital source type. Footage and stills come
# from the user: stitchcraft states that it placed them, not how they were made.
SOURCE_TYPES: dict[str, str | None] = {
    "generated": _IPTC + "trainedAlgorithmicMedia",
    "title": _IPTC + "digitalCreation",
    "footage": None,
    "still": None,
}
# Engines that only place what the user supplied or draw a card; any other engine
# (diffusion pipelines, hosted models, plug-ins) is taken to be generative AI, so that
# an unknown engine is over-disclosed rather than hidden.
_PLACING_ENGINES = {"footage": "footage", "stills": "still", "title": "title"}
_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime"}
# Validation states that mean the manifest and the bytes it covers are intact.
_INTACT = ("Valid", "Trusted")


# --- the facts --------------------------------------------------------------------------

@dataclass(frozen=True)
class TakeCredit:
    """What made one take of a shot (one per segment, and the keyframe still)."""

    engine: str
    seed: int
    model: str | None = None
    provider: str | None = None


@dataclass(frozen=True)
class ShotCredit:
    """One shot of a cut and where its pictures come from.

    Attributes:
        id: The shot's id.
        source: ``generated``, ``title``, ``footage`` or ``still``.
        digital_source_type: The IPTC URI for `source` (None: not stated).
        start, frames: Its place on the cut's timeline, in frames.
        takes: What made each of its segments' chosen takes.
        keyframe: What made the still its first segment animates, if any.
        file: The footage or still file's name (never its folder).
    """

    id: str
    source: str
    digital_source_type: str | None
    start: int
    frames: int
    takes: tuple[TakeCredit, ...]
    keyframe: TakeCredit | None = None
    file: str | None = None


@dataclass(frozen=True)
class CredentialFacts:
    """What a cut's content credentials state (the one record the manifest, the tags and
    the sidecar are made from).

    Attributes:
        output: The cut's file name.
        storyboard: The storyboard's file name (never its folder).
        storyboard_sha256: The digest of the storyboard file as rendered.
        variant: The variant's name, None for the main cut.
        fps: The cut's frame rate (``24``, ``30000/1001``), for reading `ShotCredit.start`.
        shots: Every shot, in timeline order.
        tool: The producing tool and its version.
    """

    output: str
    storyboard: str
    storyboard_sha256: str
    variant: str | None
    fps: str
    shots: tuple[ShotCredit, ...]
    tool: str = f"stitchcraft {__version__}"

    @property
    def generated_shots(self) -> list[ShotCredit]:
        return [s for s in self.shots if s.source == "generated"]

    @property
    def digital_source_type(self) -> str:
        """The cut's IPTC source type as a whole."""
        generated = len(self.generated_shots)
        if generated and generated == len(self.shots):
            return _IPTC + "trainedAlgorithmicMedia"
        if generated:
            return _IPTC + "compositeWithTrainedAlgorithmicMedia"
        if all(s.source == "title" for s in self.shots):
            return _IPTC + "digitalCreation"
        return _IPTC + "composite"

    def statement(self) -> str:
        """One sentence a person reads in a player's info panel."""
        generated = self.generated_shots
        if not generated:
            return f"Made with {self.tool}; no shot was made by generative AI."
        engines = sorted({t.model or t.engine for s in generated for t in s.takes})
        return (f"AI-generated content: {len(generated)} of {len(self.shots)} shots made by "
                f"generative AI ({', '.join(engines)}), assembled with {self.tool}.")

    def to_json(self) -> dict[str, Any]:
        return {"stitchcraft_credentials": FACTS_VERSION, "ai_generated": bool(self.generated_shots),
                "digital_source_type": self.digital_source_type, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CredentialFacts:
        """The facts as `to_json` wrote them.

        Raises:
            ValueError: not stitchcraft credentials of a version this code reads.
        """
        if data.get("stitchcraft_credentials") != FACTS_VERSION:
            raise ValueError("not stitchcraft content credentials version 1")
        try:
            shots = tuple(ShotCredit(**{**s, "takes": tuple(TakeCredit(**t) for t in s["takes"]),
                                        "keyframe": TakeCredit(**s["keyframe"]) if s.get("keyframe") else None})
                          for s in data["shots"])
            return cls(output=data["output"], storyboard=data["storyboard"],
                       storyboard_sha256=data["storyboard_sha256"], variant=data.get("variant"),
                       fps=data["fps"], shots=shots, tool=data["tool"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"credentials are incomplete ({exc})") from None

    def tags(self) -> dict[str, str]:
        """The container metadata tags: ``comment`` a sentence, ``description`` the facts."""
        return {"comment": self.statement(),
                "description": json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)}

    def manifest_definition(self, title: str, mime: str) -> dict[str, Any]:
        """The C2PA manifest definition: a ``c2pa.created`` action for the cut, one
        ``c2pa.placed`` action per shot referring to the shot as an ingredient, and the
        facts as a stitchcraft assertion."""
        agent = {"name": "stitchcraft", "version": __version__}
        actions: list[dict[str, Any]] = [{
            "action": "c2pa.created", "digitalSourceType": self.digital_source_type,
            "softwareAgent": agent, "description": self.statement()}]
        ingredients = []
        for index, shot in enumerate(self.shots):
            label = f"shot-{index}"
            ingredients.append({"title": f"shot {shot.id}", "format": mime, "relationship": "componentOf",
                                "label": label})
            action: dict[str, Any] = {
                "action": "c2pa.placed", "softwareAgent": agent,
                "description": f"shot {shot.id}: {shot.source}",
                "parameters": {"ingredientIds": [label], "org.stitchcraft.shot": shot.id,
                               "org.stitchcraft.source": shot.source,
                               "org.stitchcraft.takes": [asdict(t) for t in shot.takes]}}
            if shot.digital_source_type:
                action["digitalSourceType"] = shot.digital_source_type
            actions.append(action)
        return {
            "claim_generator_info": [agent], "title": title, "format": mime,
            "ingredients": ingredients,
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}},
                           {"label": ASSERTION, "data": self.to_json()}],
        }


def credit_cut(loaded: LoadedStoryboard, variant: str | None, selection: Selection,
               output: Path) -> CredentialFacts:
    """The credentials of one cut: its shots' chosen takes, as the selection chose them."""
    takes: dict[str, list[TakeCredit]] = {}
    keyframes: dict[str, TakeCredit] = {}
    for unit, candidate in zip(selection.units, selection.chosen, strict=True):
        take = candidate.take
        made = take.meta.get("meta", {})
        credit = TakeCredit(engine=take.engine, seed=take.seed, model=made.get("model"),
                            provider=made.get("provider"))
        if unit.is_keyframe:
            keyframes[unit.shot.id] = credit
        else:
            takes.setdefault(unit.shot.id, []).append(credit)
    shots = []
    for plan_shot in selection.plan.shots:
        made_by = takes.get(plan_shot.id, [])
        keyframe = keyframes.get(plan_shot.id)
        source = _source_of(made_by, keyframe)
        shots.append(ShotCredit(
            id=plan_shot.id, source=source, digital_source_type=SOURCE_TYPES[source],
            start=plan_shot.start, frames=plan_shot.frames, takes=tuple(made_by), keyframe=keyframe,
            file=_supplied_file(selection, plan_shot.id) if source in ("footage", "still") else None))
    return CredentialFacts(output=output.name, storyboard=loaded.path.name,
                           storyboard_sha256=sha256_file(loaded.path), variant=variant,
                           fps=str(selection.plan.fps), shots=tuple(shots))


def _source_of(takes: list[TakeCredit], keyframe: TakeCredit | None) -> str:
    """A shot is generated if any take of it (or its keyframe) came from a generative
    engine, or its takes came from different kinds of placing engine."""
    placed = {_PLACING_ENGINES.get(t.engine, "generated") for t in takes}
    if keyframe is not None and keyframe.engine not in _PLACING_ENGINES:
        return "generated"
    return placed.pop() if len(placed) == 1 else "generated"


def _supplied_file(selection: Selection, shot_id: str) -> str | None:
    take = selection.shot_takes.get(shot_id)
    if take is None:
        return None
    made = take.meta.get("meta", {})
    named = made.get("source") or made.get("image")
    return Path(str(named)).name if named else take.video.name


# --- the signer -------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningIdentity:
    """Who signs the C2PA manifests: a certificate chain (signer first) and its key.

    Attributes:
        chain: PEM certificates.
        key: The PEM private key (never printed: excluded from repr).
        alg: The C2PA signing algorithm (``es256``, ``ps256``, ``ed25519``, ...).
        subject: The signing certificate's common name.
        development: Signed with stitchcraft's development certificate (not trusted).
        tsa_url: A timestamp authority to countersign with, if configured.
    """

    chain: bytes = field(repr=False)
    key: bytes = field(repr=False)
    alg: str
    subject: str
    development: bool
    tsa_url: str | None = None

    @property
    def warning(self) -> str | None:
        if not self.development:
            return None
        return (f"content credentials are signed with the '{DEVELOPMENT_NAME}' (no validator trusts "
                f"it); set {CERT_ENV} and {KEY_ENV} to your certificate chain and key to sign as "
                "your organisation")


def signing_identity(cache: Path, environ: Mapping[str, str] | None = None) -> SigningIdentity:
    """The configured signer, else the development one kept in `cache`/credentials.

    Raises:
        ConfigError: only one of the certificate and key is set, or a file is missing,
            unreadable, encrypted, expired, or the key does not match the certificate.
    """
    env = os.environ if environ is None else environ
    cert_file, key_file = env.get(CERT_ENV, "").strip(), env.get(KEY_ENV, "").strip()
    tsa = env.get(TSA_ENV, "").strip() or None
    if bool(cert_file) != bool(key_file):
        missing = KEY_ENV if cert_file else CERT_ENV
        raise ConfigError(f"{CERT_ENV} and {KEY_ENV} go together; {missing} is not set")
    if not cert_file:
        return development_identity(cache / "credentials")
    chain = _read_pem(cert_file, CERT_ENV)
    key = _read_pem(key_file, KEY_ENV)
    return _identity(chain, key, development=False, tsa_url=tsa,
                     where=(f"{CERT_ENV}={cert_file}", f"{KEY_ENV}={key_file}"))


def development_identity(folder: Path) -> SigningIdentity:
    """stitchcraft's development signer, made once in `folder` and reused until a week
    before it expires. Its certificate is labelled "not trusted" for anyone to see."""
    from .media import atomic_output

    path = folder / "development-signer.pem"
    if path.is_file():
        key, chain = _split_pem(path.read_bytes())
        try:
            identity = _identity(chain, key, development=True, tsa_url=None, where=(str(path), str(path)),
                                 renew_within=datetime.timedelta(days=7))
        except ConfigError:
            pass  # expired, damaged or foreign: make a new one
        else:
            return identity
    key, chain = make_development_certificate()
    with atomic_output(path) as partial:
        partial.write_bytes(key + chain)
        os.chmod(partial, 0o600)
    os.chmod(path, 0o600)  # the rename gave it the usual mode
    return _identity(chain, key, development=True, tsa_url=None, where=(str(path), str(path)))


def make_development_certificate(days: int = 365) -> tuple[bytes, bytes]:
    """A new key and chain named as stitchcraft's untrusted development signer.

    Returns:
        (PEM private key, PEM certificate chain).
    """
    return make_certificate(DEVELOPMENT_NAME, DEVELOPMENT_CA_NAME,
                            "stitchcraft (development, not trusted)", days=days)


def make_certificate(common_name: str, ca_name: str, organisation: str, *,
                     days: int = 365) -> tuple[bytes, bytes]:
    """A new ES256 key and a two-certificate chain (signer, then a CA of its own) that
    C2PA's certificate profile accepts; C2PA refuses self-signed signing certificates,
    hence the CA. No validator trusts the CA: this is for development and tests.

    Returns:
        (PEM private key, PEM certificate chain).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name), org])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), org])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    def certificate(subject: x509.Name, public: Any, is_ca: bool) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True)
                .add_extension(usage(sign=not is_ca), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))

    ca = certificate(issuer, ca_key.public_key(), True).sign(ca_key, hashes.SHA256())
    leaf = (certificate(name, key.public_key(), False)
            # C2PA's certificate profile asks for one of a few purposes; e-mail protection
            # is the one its own test certificates use.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, leaf.public_bytes(pem) + ca.public_bytes(pem)


def _read_pem(name: str, variable: str) -> bytes:
    path = Path(name).expanduser()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{variable}={name}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{variable}={name}: cannot be read ({exc.strerror})") from None


def _split_pem(data: bytes) -> tuple[bytes, bytes]:
    """(the private key block, the certificate blocks) of one PEM file."""
    blocks = [m.group(0) for m in re.finditer(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----\s*", data, re.S)]
    key = b"".join(b for b in blocks if b.startswith(b"-----BEGIN") and b"PRIVATE KEY-----" in b[:40])
    chain = b"".join(b for b in blocks if b.startswith(b"-----BEGIN CERTIFICATE-----"))
    return key, chain


def _identity(chain: bytes, key: bytes, *, development: bool, tsa_url: str | None,
              where: tuple[str, str], renew_within: datetime.timedelta = datetime.timedelta(0)) -> SigningIdentity:
    """Checks a chain and key belong together and are in date; says which file is wrong,
    never what a key holds."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509.oid import NameOID

    cert_where, key_where = where
    try:
        certificates = x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise ConfigError(f"{cert_where}: no PEM certificate chain in it") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise ConfigError(f"{key_where}: the private key is encrypted; give an unencrypted PEM key "
                          "(keep it readable only by you)") from None
    except ValueError:
        raise ConfigError(f"{key_where}: not a PEM private key") from None
    signer = certificates[0]
    if signer.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo) != \
            private.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ConfigError(f"{key_where}: this key does not belong to the first certificate of {cert_where}")
    now = datetime.datetime.now(datetime.UTC)
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc - renew_within:
        raise ConfigError(f"{cert_where}: the certificate is valid from {signer.not_valid_before_utc:%Y-%m-%d} "
                          f"to {signer.not_valid_after_utc:%Y-%m-%d}, not now")
    if isinstance(private, ec.EllipticCurvePrivateKey):
        alg = {256: "es256", 384: "es384", 521: "es512"}.get(private.curve.key_size)
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        alg = "ed25519"
    elif isinstance(private, rsa.RSAPrivateKey):
        alg = "ps256"
    else:
        alg = None
    if alg is None:
        raise ConfigError(f"{key_where}: C2PA signs with EC P-256/384/521, Ed25519 or RSA keys, not this one")
    names = signer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else signer.subject.rfc4514_string()
    return SigningIdentity(chain=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates),
                           key=key, alg=alg, subject=subject, development=development, tsa_url=tsa_url)


# --- sealing a cut ----------------------------------------------------------------------

@dataclass(frozen=True)
class Credentials:
    """The content credentials of one cut, ready to seal its verified file.

    Attributes:
        facts: What they state.
        identity: Who signs.
        destination: The cut's final path (the sidecar goes beside it).
    """

    facts: CredentialFacts
    identity: SigningIdentity
    destination: Path

    @property
    def embeds(self) -> bool:
        """Whether the cut's container can carry a C2PA manifest."""
        return self.destination.suffix.lower() in _MIME

    @property
    def warning(self) -> str | None:
        if self.embeds:
            return None
        return (f"{self.destination.name}: Matroska cannot carry a C2PA manifest; its content "
                f"credentials are in its metadata tags and {sidecar_path(self.destination).name} only "
                "(render to .mp4 or .mov for a signed manifest)")

    def tags(self) -> dict[str, str]:
        return self.facts.tags()

    def seal(self, video: Path) -> None:
        """Signs `video` (the verified temporary file) in place, reads the manifest back,
        and writes the sidecar beside the destination.

        Raises:
            VerificationError: the signed file's manifest does not validate or does not
                state these facts; nothing is published.
            StorageError: the sidecar cannot be written.
        """
        from .media import atomic_output

        c2pa_facts: dict[str, Any] = {"embedded": False}
        if self.embeds:
            mime = _MIME[self.destination.suffix.lower()]
            with atomic_output(video) as signed:
                _sign(self.facts.manifest_definition(self.destination.name, mime), self.identity,
                      mime, video, signed)
                found = read_manifest(signed)
                if found.state not in _INTACT or found.facts != self.facts:
                    problem = "; ".join(found.failures) or "it does not state the render's facts"
                    raise VerificationError(f"{self.destination.name}: the C2PA manifest did not "
                                            f"validate after signing ({problem}); nothing was published")
            c2pa_facts = {"embedded": True, "manifest": found.label, "validation_state": found.state,
                          "signer": self.identity.subject, "issuer": found.issuer, "alg": self.identity.alg,
                          "development_certificate": self.identity.development}
        sidecar = {**self.facts.to_json(), "video_sha256": sha256_file(video), "c2pa": c2pa_facts}
        with atomic_output(sidecar_path(self.destination)) as partial:
            partial.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")


def sidecar_path(video: Path) -> Path:
    """The sidecar beside a cut: ``teaser.mp4`` -> ``teaser.mp4.credentials.json`` (the
    suffix kept, so that ``teaser.mp4`` and ``teaser.mov`` never share one)."""
    return video.with_name(video.name + SIDECAR_SUFFIX)


def _sign(definition: dict[str, Any], identity: SigningIdentity, mime: str, source: Path,
          dest: Path) -> None:
    import c2pa

    info = c2pa.C2paSignerInfo(identity.alg, identity.chain, identity.key, identity.tsa_url)
    try:
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(definition) as builder, \
                open(source, "rb") as src, open(dest, "w+b") as dst:
            builder.sign(signer, mime, src, dst)
    except c2pa.C2paError as exc:
        # The library's message names the failing step; it never holds the key.
        raise VerificationError(f"{source.name}: C2PA signing failed ({exc})") from None


# --- reading back -----------------------------------------------------------------------

@dataclass
class ManifestReading:
    """What a file's C2PA manifest says and whether it holds.

    Attributes:
        state: ``Trusted``, ``Valid`` or ``Invalid`` (c2pa's words), or ``Missing``.
        failures: The validation failures (codes and explanations), empty when intact.
        facts: The stitchcraft credentials in the manifest, None if it has none.
        label: The active manifest's label.
        signer, issuer: The signing certificate's common name and issuer.
        untrusted: The signer is not on a trust list this reader knows.
        actions: The manifest's actions (``c2pa.created``, ``c2pa.placed``, ...).
    """

    state: str
    failures: list[str] = field(default_factory=list)
    facts: CredentialFacts | None = None
    label: str | None = None
    signer: str | None = None
    issuer: str | None = None
    untrusted: bool = False
    actions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.state in _INTACT

    @property
    def development(self) -> bool:
        return self.signer == DEVELOPMENT_NAME


def read_manifest(video: Path) -> ManifestReading:
    """Reads and validates a file's C2PA manifest (a damaged one reads as ``Invalid``).

    Raises:
        MediaError: the file is missing.
    """
    import c2pa

    from .errors import MediaError

    if not video.is_file():
        raise MediaError(video, "no such file")
    mime = _MIME.get(video.suffix.lower())
    if mime is None:
        return ManifestReading(state="Missing", failures=[f"{video.suffix} files cannot carry a C2PA manifest"])
    try:
        with open(video, "rb") as stream, c2pa.Reader(mime, stream) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        if str(exc).startswith("ManifestNotFound"):
            return ManifestReading(state="Missing")
        return ManifestReading(state="Invalid", failures=[str(exc)])
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    statuses = store.get("validation_status") or []
    untrusted = any(s.get("code") == "signingCredential.untrusted" for s in statuses)
    failures = [f"{s.get('code')}: {s.get('explanation', '')}" for s in statuses
                if s.get("code") != "signingCredential.untrusted"]
    reading = ManifestReading(state=store.get("validation_state") or ("Invalid" if failures else "Valid"),
                              failures=failures, label=active.get("label"), untrusted=untrusted,
                              signer=active.get("signature_info", {}).get("common_name"),
                              issuer=active.get("signature_info", {}).get("issuer"))
    for assertion in active.get("assertions", []):
        if assertion.get("label") == ASSERTION:
            try:
                reading.facts = CredentialFacts.from_json(assertion.get("data", {}))
            except ValueError as exc:
                reading.failures.append(f"{ASSERTION}: {exc}")
        elif str(assertion.get("label", "")).startswith("c2pa.actions"):
            reading.actions = list(assertion.get("data", {}).get("actions", []))
    return reading


@dataclass
class Inspection:
    """Everything `stitch inspect` reports about a cut.

    Attributes:
        video: The file.
        manifest: Its C2PA manifest.
        tags: Its container's ``comment`` and ``description``.
        tag_facts: The facts its ``description`` tag holds, if any.
        sidecar: The sidecar file, if there is one.
        sidecar_matches: The sidecar's digest is this file's (None without a sidecar).
    """

    video: Path
    manifest: ManifestReading
    tags: dict[str, str]
    tag_facts: CredentialFacts | None
    sidecar: Path | None
    sidecar_matches: bool | None

    @property
    def facts(self) -> CredentialFacts | None:
        """The facts, from the manifest when it is intact, else from the tags (which
        nothing protects)."""
        return self.manifest.facts if self.manifest.intact and self.manifest.facts else self.tag_facts

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"video": str(self.video), "validation": m.state.lower(), "failures": m.failures,
                "signer": m.signer, "issuer": m.issuer, "signer_trusted": m.intact and not m.untrusted,
                "development_certificate": m.development,
                "manifest_facts": m.facts.to_json() if m.facts else None,
                "tags": self.tags, "tags_agree": self.tag_facts == m.facts if m.facts else None,
                "sidecar": str(self.sidecar) if self.sidecar else None,
                "sidecar_matches": self.sidecar_matches}


def inspect_video(video: Path) -> Inspection:
    """Reads a cut's content credentials from its manifest, tags and sidecar.

    Raises:
        MediaError: the file is missing or is not a media file.
    """
    from .media import container_tags

    manifest = read_manifest(video)
    tags = {k: v for k, v in container_tags(video).items() if k in ("comment", "description")}
    tag_facts = None
    try:
        tag_facts = CredentialFacts.from_json(json.loads(tags.get("description", "")))
    except (ValueError, AttributeError):
        pass
    sidecar = sidecar_path(video)
    matches = None
    if sidecar.is_file():
        try:
            matches = json.loads(sidecar.read_text(encoding="utf-8")).get("video_sha256") == sha256_file(video)
        except (OSError, ValueError, AttributeError):
            matches = False
    return Inspection(video=video, manifest=manifest, tags=tags, tag_facts=tag_facts,
                      sidecar=sidecar if sidecar.is_file() else None, sidecar_matches=matches)


