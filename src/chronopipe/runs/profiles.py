"""Profiles: named connection settings kept out of the run configuration, with secrets that do not print.

A run configuration names a profile (``profile: postgres``); its fields come from
``~/.chronopipe/profiles.yml`` (or a file given explicitly; the seed's ``~/.socket_el/profile.yml``
when that one does not exist and it does) and from environment variables::

    postgres:
      user: postgres
      password: password
      database: test
      host: 127.0.0.1
      port: 5432
      schema: test

``CHRONOPIPE_PROFILE_<NAME>_<FIELD>=value`` sets a field (creating the profile if need be): NAME is
the profile name upper-cased, any character other than a letter or digit written ``_``; a file's
profile name is matched first (the longest that fits), else NAME is the part before the first ``_``
and a new profile is named by it in lower case. FIELD is lower-cased.

The file must be readable by its owner only (``chmod 600``): it is refused otherwise. The values of
secret keys (password, token, ... see :data:`SECRET_KEYS`) become :class:`Secret`, which shows as
``***`` wherever it is printed, logged, dumped or raised; ``.reveal()`` gives the value.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import shlex
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator
from pydantic_core import core_schema

from .yamlread import StrictLoader, yaml_error_line

__all__ = [
    "ENV_PREFIX",
    "SECRET_KEYS",
    "Profile",
    "ProfileError",
    "Profiles",
    "Secret",
    "default_profiles_path",
    "is_secret_key",
    "load_profiles",
    "seed_profiles_path",
]

SECRET_KEYS: frozenset[str] = frozenset({"password", "passwd", "secret", "token", "api_key", "key", "dsn",
                                         "conninfo"})  # fmt: skip
"""Keys whose values are secrets: the key itself, any case, or ending with ``_`` and one of these
(``db_password``, ``access_token``, ``client_secret``). A ``dsn`` may hold a password: a secret too."""

ENV_PREFIX = "CHRONOPIPE_PROFILE_"

# libpq connection keywords a profile may carry that Profile.connect_options passes on as they are.
_LIBPQ = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name",
          "target_session_attrs", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
          "tcp_user_timeout")  # fmt: skip


class ProfileError(Exception):
    """A profile that cannot be used, in one line naming its file (or variable) and the fix.
    The message never holds a secret's value."""


class Secret:
    """A value that shows as ``***``: in ``repr``, ``str``, ``format`` and f-strings, logging, pydantic
    dumps to JSON, ``json.dumps(..., default=str)``, and exceptions that print it. ``reveal()`` gives it.

    Pickling keeps the value (a process-hosted runner needs it) but not as plain text in the bytes.
    In a pydantic model, ``model_dump()`` keeps the Secret object and ``model_dump_json()`` writes ``"***"``.

    >>> secret = Secret("hunter2")
    >>> secret, f"{secret}", secret.reveal(), secret == Secret("hunter2")
    (***, '***', 'hunter2', True)
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The value, for the one call that needs it (``psycopg.connect(password=...)``)."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format("***", spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # base64: not encryption, just no plain text in pickle bytes, queue dumps or a grep of them.
        return _unmask, (base64.b64encode(self._value.encode()),)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        # Secret instances only: a profile wraps its secret keys' values itself (Profile validator).
        return core_schema.is_instance_schema(
            cls, serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json")
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "writeOnly": True, "format": "password"}


def _unmask(masked: bytes) -> Secret:
    return Secret(base64.b64decode(masked).decode())


def is_secret_key(key: str, secret_keys: Collection[str] = SECRET_KEYS) -> bool:
    """Whether a profile field named ``key`` holds a secret.

    >>> is_secret_key("Password"), is_secret_key("db_password"), is_secret_key("sslkey"), is_secret_key("user")
    (True, True, False, False)
    """
    key = key.lower()
    return key in secret_keys or any(key.endswith("_" + secret) for secret in secret_keys)


Value = Secret | str | int | float | bool | None


class Profile(BaseModel):
    """One profile: its ``name``, its ``fields`` (the values of secret keys as :class:`Secret`) and
    ``source``, where it was defined (for messages). ``profile["host"]``, ``profile.get("port")``.

    Built directly, the values of secret keys are wrapped as Secret (:data:`SECRET_KEYS`, or the
    validation context's ``secret_keys``).

    >>> Profile(name="pg", fields={"user": "u", "password": "pw"})
    Profile(name='pg', fields={'user': 'u', 'password': ***}, source='')
    """

    model_config = ConfigDict(frozen=True, strict=True, hide_input_in_errors=True)

    name: str
    fields: dict[str, Value]
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _wrap_secrets(cls, data: Any, info: ValidationInfo) -> Any:
        secret_keys = (info.context or {}).get("secret_keys", SECRET_KEYS)
        if isinstance(data, Mapping) and isinstance(data.get("fields"), Mapping):
            fields = {key: _wrap(key, value, secret_keys) for key, value in data["fields"].items()}
            data = {**data, "fields": fields}
        return data

    def __getitem__(self, key: str) -> Value:
        try:
            return self.fields[key]
        except KeyError:
            raise KeyError(f"profile {self.name!r} has no field {key!r} (fields: {', '.join(self.fields)})") from None

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def connect_options(self) -> dict[str, Any]:
        """Keywords for ``psycopg.connect(**options)``: ``conninfo`` (a ``dsn`` or ``conninfo`` field,
        revealed: the fields below override its parameters), host, port (int), user, password
        (revealed: keep the dict out of logs), dbname (``dbname`` or ``database``), the libpq keys
        sslmode, sslrootcert, sslcert, sslkey, connect_timeout, application_name,
        target_session_attrs, keepalives, keepalives_idle, keepalives_interval, keepalives_count and
        tcp_user_timeout, and ``options="-c search_path=SCHEMA"`` when ``schema`` is set. Only the
        fields set; any other field is the business of whoever reads the profile.

        Raises: ProfileError when port is not a whole number (the message shows no secret).

        >>> Profile(name="pg", fields={"host": "db", "port": "5432", "database": "test", "schema": "raw"}
        ...         ).connect_options()
        {'host': 'db', 'port': 5432, 'dbname': 'test', 'options': '-c search_path=raw'}
        """
        fields, options = self.fields, {}
        dsn = fields.get("dsn", fields.get("conninfo"))
        if dsn is not None:
            options["conninfo"] = dsn.reveal() if isinstance(dsn, Secret) else str(dsn)
        if fields.get("host") is not None:
            options["host"] = str(fields["host"])
        if fields.get("port") is not None:
            port = fields["port"]
            if isinstance(port, bool) or not re.fullmatch(r"\s*\d+\s*", str(port)):
                raise ProfileError(self.scrub(f"{self._where()}: port must be a whole number, not {port!r}"))
            options["port"] = int(str(port))
        if fields.get("user") is not None:
            options["user"] = str(fields["user"])
        password = fields.get("password", fields.get("passwd"))
        if password is not None:
            options["password"] = password.reveal() if isinstance(password, Secret) else str(password)
        dbname = fields.get("dbname", fields.get("database"))
        if dbname is not None:
            options["dbname"] = str(dbname)
        for key in _LIBPQ:
            if fields.get(key) is not None:
                options[key] = str(fields[key])
        if fields.get("schema") is not None:  # libpq options: a backslash escapes a space or itself
            schema = re.sub(r"([\\\s])", r"\\\1", str(fields["schema"]))
            options["options"] = f"-c search_path={schema}"
        return options

    def scrub(self, text: str) -> str:
        """``text`` with the value of every Secret field of this profile written ``***`` (a password
        typed into another field by mistake, say)."""
        secrets = [value.reveal() for value in self.fields.values() if isinstance(value, Secret) and value]
        for secret in sorted(secrets, key=len, reverse=True):  # the longest first: one may hold another
            text = text.replace(secret, "***")
        return text

    def _where(self) -> str:
        return f"profile {self.name!r}" + (f" ({self.source})" if self.source else "")


def _wrap(key: Any, value: Any, secret_keys: Collection[str]) -> Any:
    if isinstance(key, str) and is_secret_key(key, secret_keys) and value is not None and not isinstance(value, Secret):
        return Secret(value if isinstance(value, str) else str(value))
    return value


class Profiles(dict[str, Profile]):
    """The profiles by name; ``profiles[name]`` raises ProfileError naming the known ones and where
    they were looked for (``get`` and ``in`` work as for any dict). ``source`` says where that was."""

    def __init__(self, profiles: Mapping[str, Profile] = (), *, source: str = "") -> None:
        super().__init__(profiles)
        self.source = source

    def __missing__(self, name: str) -> Profile:
        known = ", ".join(sorted(self)) or "none"
        env = _env_name(name) or "NAME"
        raise ProfileError(f"no profile {name!r} (known: {known}; looked in {self.source}): add it there "
                           f"or set {ENV_PREFIX}{env}_HOST and the like")  # fmt: skip

    def __reduce__(self) -> tuple[Any, ...]:
        return Profiles, (dict(self),), {"source": self.source}


def default_profiles_path() -> Path:
    """``~/.chronopipe/profiles.yml``."""
    return Path.home() / ".chronopipe" / "profiles.yml"


def seed_profiles_path() -> Path:
    """``~/.socket_el/profile.yml``, where the seed (socket_el) kept its profiles."""
    return Path.home() / ".socket_el" / "profile.yml"


def load_profiles(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    secret_keys: Collection[str] = SECRET_KEYS,
) -> Profiles:
    """The profiles of ``path`` (default ``~/.chronopipe/profiles.yml``; when that does not exist and
    the seed's ``~/.socket_el/profile.yml`` does, that one, under the same rules) with the
    environment's ``CHRONOPIPE_PROFILE_<NAME>_<FIELD>`` variables over them (``environ``: default
    ``os.environ``).

    Missing default files give no profiles but those of the environment. An unknown name's
    ProfileError names the files looked in.

    Raises:
        ProfileError: an explicit file is missing; the file is readable or writable by group or
            others (the message says ``chmod 600 FILE``); it is not YAML, or not a mapping of
            profile names to mappings of single values; a variable names no field.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None
    looked = [Path(path).expanduser() if explicit else default_profiles_path()]
    if not explicit and not looked[0].exists():
        looked.append(seed_profiles_path())
    path = next((file for file in looked if file.exists()), looked[0])
    secret_keys = frozenset(key.lower() for key in secret_keys)
    profiles: dict[str, dict[str, Any]] = {}
    if explicit or path.exists():
        profiles = _read(path, secret_keys)
    from_file, from_env = set(profiles), set()
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        name, field = _split(variable[len(ENV_PREFIX) :], profiles)
        if not name or not field:
            raise ProfileError(f"{variable}: expected {ENV_PREFIX}<NAME>_<FIELD>, like {ENV_PREFIX}POSTGRES_HOST")
        profiles.setdefault(name, {})[field] = _wrap(field, environ[variable], secret_keys)
        from_env.add(name)
    found = {}
    for name, fields in profiles.items():
        source = " and ".join(
            [str(path)] * (name in from_file) + [f"{ENV_PREFIX}{_env_name(name)}_*"] * (name in from_env)
        )
        found[name] = Profile.model_validate(
            {"name": name, "fields": fields, "source": source}, context={"secret_keys": secret_keys}
        )
    files = "".join(f"{file}{'' if file.exists() else ', not found'}, " for file in looked)
    return Profiles(found, source=f"{files}and {ENV_PREFIX}* variables")


def _read(path: Path, secret_keys: frozenset[str]) -> dict[str, dict[str, Any]]:
    try:
        status = path.stat()
        if not path.is_file():
            raise ProfileError(f"{path}: not a file (profiles are a YAML file)")
        if os.name == "posix" and status.st_mode & 0o077:
            raise ProfileError(f"{path}: group or others may read or change it (mode {status.st_mode & 0o777:04o}); "
                               f"run: chmod 600 {shlex.quote(str(path))}")  # fmt: skip
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profiles file") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise ProfileError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        raise ProfileError(yaml_error_line(str(path), error)) from None  # the line itself is left out
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: must map profile names to their fields (postgres: {{user: ..., host: ...}})")
    profiles: dict[str, dict[str, Any]] = {}
    for name, fields in data.items():
        if not isinstance(name, str):
            raise ProfileError(f"{path}: profile name {name!r} is not a string")
        if not isinstance(fields, dict):
            raise ProfileError(f"{path}: profile {name!r} must be a mapping of fields (user: ..., host: ...)")
        for key, value in fields.items():
            if not isinstance(key, str):
                raise ProfileError(f"{path}: profile {name!r}: field name {key!r} is not a string")
            if not isinstance(value, str | int | float | bool | None):  # value left out: it may be a secret
                raise ProfileError(f"{path}: profile {name!r}: field {key!r} must be a single value, "
                                   f"not a {type(value).__name__}")  # fmt: skip
        profiles[name] = {key: _wrap(key, value, secret_keys) for key, value in fields.items()}
    return profiles


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _split(rest: str, profiles: Mapping[str, Any]) -> tuple[str, str]:
    """(profile name, field) of a variable's part after the prefix: a known profile first."""
    known = [name for name in profiles if rest.startswith(_env_name(name) + "_")]
    if known:
        name = max(known, key=len)
        return name, rest[len(_env_name(name)) + 1 :].lower()
    name, _, field = rest.partition("_")
    return name.lower(), field.lower()
