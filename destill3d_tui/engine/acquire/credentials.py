"""Platform credentials: environment first, then the system keyring, never a silent plaintext file.

Lookup order for ``get(platform, field)``:

1. the environment (``THINGIVERSE_API_KEY``, ``GITHUB_TOKEN``, ... see :data:`ENV_NAMES`);
2. the system keyring (service ``destill3d``, user ``<platform>`` or ``<platform>:<field>``);
3. a plaintext file, only if the user created it on purpose with
   ``config credentials set --allow-plaintext-credentials`` on a box without a secure keyring.

Secrets never appear in logs, the database or error messages: every secret read here is
registered with :func:`redact`, which http.py applies to each message and URL it puts in an error.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .. import locations
from ..errors import ConfigError

SERVICE = "destill3d"

# platform -> field -> environment variable names (first one set wins).
ENV_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "thingiverse": {"token": ("THINGIVERSE_API_KEY", "THINGIVERSE_TOKEN")},
    "sketchfab": {"token": ("SKETCHFAB_API_KEY", "SKETCHFAB_API_TOKEN"), "oauth": ("SKETCHFAB_OAUTH_TOKEN",)},
    "github": {"token": ("GITHUB_TOKEN", "GH_TOKEN")},
    "myminifactory": {"token": ("MYMINIFACTORY_API_KEY",), "oauth": ("MYMINIFACTORY_OAUTH_TOKEN",)},
    "cults3d": {"token": ("CULTS3D_API_KEY",), "username": ("CULTS3D_USERNAME",)},
    "smithsonian": {"token": ("SMITHSONIAN_API_KEY", "SI_API_KEY")},
    "printables": {},
    "thangs": {"token": ("THANGS_TOKEN",)},
    "grabcad": {"session": ("GRABCAD_SESSION",)},
}

# Query parameters and header names whose values are secrets wherever they appear.
_SECRET_PARAMS = ("access_token", "api_key", "apikey", "key", "token", "x-amz-signature", "signature", "sig")
_PARAM_RE = re.compile(r"(?i)([?&](?:" + "|".join(re.escape(p) for p in _SECRET_PARAMS) + r")=)[^&#\s]*")
_AUTH_RE = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|token|basic)?\s*)[^\s\"',}]+")

_known_secrets: set[str] = set()
_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Register a secret so :func:`redact` hides it everywhere (values under 4 chars are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _known_secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret, secret query parameter and Authorization value masked."""
    text = _PARAM_RE.sub(r"\1***", text)
    text = _AUTH_RE.sub(r"\1***", text)
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- keyring


def keyring_is_secure() -> tuple[bool, str]:
    """Whether the active keyring backend stores secrets securely, and its name."""
    try:
        import keyring
        from keyring.backends import chainer, fail
    except Exception as exc:  # an optional backend failing to import must not break the CLI
        return False, f"keyring unavailable ({type(exc).__name__})"
    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring):
        return False, name
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return False, name
    if "plaintext" in name.lower() or "null" in name.lower():
        return False, name
    return True, name


def _user(platform: str, field: str) -> str:
    return platform if field == "token" else f"{platform}:{field}"


def _keyring_get(platform: str, field: str) -> str | None:
    secure, _ = keyring_is_secure()
    if not secure:
        return None
    import keyring

    try:
        return keyring.get_password(SERVICE, _user(platform, field))
    except Exception:
        return None


# ---------------------------------------------------------------- opt-in plaintext file


def plaintext_path() -> Path:
    return locations.config_dir() / "credentials.toml"


def _read_plaintext() -> dict[str, dict[str, str]]:
    path = plaintext_path()
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    return {str(k): {str(f): str(v) for f, v in fields.items()} for k, fields in tables.items()}


def _write_plaintext(data: dict[str, dict[str, str]]) -> Path:
    path = plaintext_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Destill3D credentials in PLAINTEXT (created with --allow-plaintext-credentials)."]
    for platform, fields in sorted(data.items()):
        if fields:
            lines.append(f"[{platform}]")
            lines += [f"{f} = {json.dumps(v)}" for f, v in sorted(fields.items())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


# ---------------------------------------------------------------- public


def _check_platform(platform: str, field: str) -> None:
    if platform not in ENV_NAMES:
        raise ConfigError(f"unknown platform {platform!r}; known: {', '.join(sorted(ENV_NAMES))}")
    if field not in ENV_NAMES[platform] and field not in ("token", "oauth", "username", "session"):
        raise ConfigError(f"unknown credential field {field!r} for {platform}")


def get(platform: str, field: str = "token") -> str | None:
    """The credential, or None. Registered with :func:`redact` before it is returned."""
    value = None
    for name in ENV_NAMES.get(platform, {}).get(field, ()):
        if os.environ.get(name):
            value = os.environ[name]
            break
    if value is None:
        value = _keyring_get(platform, field)
    if value is None:
        value = _read_plaintext().get(platform, {}).get(field)
    remember_secret(value)
    return value


def how_to_set(platform: str, field: str = "token") -> str:
    """How a user gives ``platform`` its ``field`` credential: the first environment variable
    :func:`get` reads, or the command that stores it in the keyring."""
    names = ENV_NAMES.get(platform, {}).get(field, ())
    command = f"`destill3d-tui config credentials set {platform}{'' if field == 'token' else f' --field {field}'}`"
    return f"set {names[0]} or {command}" if names else f"store it with {command}"


@dataclass(frozen=True)
class CredentialEntry:
    platform: str
    field: str
    source: str  # "env:NAME" | "keyring" | "plaintext-file"


def list_entries() -> list[CredentialEntry]:
    """Which credentials are set and where from; never the values."""
    out: list[CredentialEntry] = []
    plain = _read_plaintext()
    for platform, fields in ENV_NAMES.items():
        for field, names in fields.items():
            env = next((n for n in names if os.environ.get(n)), None)
            if env:
                out.append(CredentialEntry(platform, field, f"env:{env}"))
            elif _keyring_get(platform, field):
                out.append(CredentialEntry(platform, field, "keyring"))
            elif plain.get(platform, {}).get(field):
                out.append(CredentialEntry(platform, field, "plaintext-file"))
    return out


NO_SECURE_KEYRING = (
    "no secure keyring backend is available ({backend}). Use an environment variable "
    "({env}) for this run, install/unlock a keyring (e.g. gnome-keyring, KWallet, or "
    "keyrings.cryptfile), or store it in a plaintext file readable only by you with "
    "--allow-plaintext-credentials."
)


def set_credential(platform: str, value: str, field: str = "token", *, allow_plaintext: bool = False) -> str:
    """Store a credential; returns where it went ("keyring" or the plaintext file path)."""
    _check_platform(platform, field)
    if not value:
        raise ConfigError("empty credential")
    remember_secret(value)
    secure, backend = keyring_is_secure()
    if secure:
        import keyring

        keyring.set_password(SERVICE, _user(platform, field), value)
        return "keyring"
    if not allow_plaintext:
        env = ", ".join(ENV_NAMES[platform].get(field, ())) or "none"
        raise ConfigError(NO_SECURE_KEYRING.format(backend=backend, env=env))
    data = _read_plaintext()
    data.setdefault(platform, {})[field] = value
    return str(_write_plaintext(data))


def delete_credential(platform: str, field: str = "token") -> bool:
    """Remove from the keyring and the plaintext file; True if something was removed."""
    _check_platform(platform, field)
    removed = False
    secure, _ = keyring_is_secure()
    if secure:
        import keyring
        from keyring.errors import PasswordDeleteError

        try:
            keyring.delete_password(SERVICE, _user(platform, field))
            removed = True
        except PasswordDeleteError:
            pass
    data = _read_plaintext()
    if data.get(platform, {}).pop(field, None) is not None:
        removed = True
        _write_plaintext(data)
    return removed
