"""Profiles: the profiles file and CHRONOPIPE_PROFILE_* variables, psycopg connect options, and
secrets that show as *** wherever they are printed, logged, dumped or raised."""

from __future__ import annotations

import io
import json
import logging
import pickle
import pprint
import textwrap
import traceback
import warnings
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from chronopipe.runs.profiles import (
    Profile,
    ProfileError,
    Profiles,
    Secret,
    default_profiles_path,
    is_secret_key,
    load_profiles,
)

SEED = """\
postgres:
  user: postgres
  password: password
  database: test
  host: 127.0.0.1
  port: 5432
  schema: test
"""

PASSWORD = "s3cr3t-PW-42"


def write(folder: Path, text: str = SEED, *, mode: int = 0o600, name: str = "profiles.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


# -- the file -------------------------------------------------------------------------------
def test_the_seeds_profile_loads_with_its_password_a_secret(tmp_path):
    profile = load_profiles(write(tmp_path), environ={})["postgres"]
    assert profile.name == "postgres"
    assert {key: value for key, value in profile.fields.items() if key != "password"} == {
        "user": "postgres", "database": "test", "host": "127.0.0.1", "port": 5432, "schema": "test",
    }  # fmt: skip
    assert isinstance(profile["password"], Secret) and profile["password"].reveal() == "password"


def test_the_seeds_profile_gives_psycopg_connect_options(tmp_path):
    profile = load_profiles(write(tmp_path), environ={})["postgres"]
    assert profile.connect_options() == {
        "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "password", "dbname": "test",
        "options": "-c search_path=test",
    }  # fmt: skip


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o601, 0o610])
def test_a_file_others_or_the_group_may_read_or_write_is_refused_with_the_chmod_fix(tmp_path, mode):
    path = write(tmp_path, mode=mode)
    with pytest.raises(ProfileError) as caught:
        load_profiles(path, environ={})
    message = str(caught.value)
    assert message == (f"{path}: group or others may read or change it (mode {mode:04o}); run: chmod 600 {path}")


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_a_file_only_its_owner_may_use_loads(tmp_path, mode):
    assert "postgres" in load_profiles(write(tmp_path, mode=mode), environ={})


def test_the_default_file_is_in_the_homes_chronopipe_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".chronopipe").mkdir()
    write(tmp_path / ".chronopipe")
    assert default_profiles_path() == tmp_path / ".chronopipe" / "profiles.yml"
    assert load_profiles(environ={})["postgres"]["host"] == "127.0.0.1"


def test_a_missing_default_file_leaves_the_profiles_of_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    profiles = load_profiles(environ={"CHRONOPIPE_PROFILE_WAREHOUSE_HOST": "db"})
    assert list(profiles) == ["warehouse"] and profiles["warehouse"]["host"] == "db"


def test_without_the_default_file_the_seeds_socket_el_profile_file_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".socket_el").mkdir()
    seed = write(tmp_path / ".socket_el", name="profile.yml")
    profile = load_profiles(environ={})["postgres"]
    assert profile["host"] == "127.0.0.1" and profile.source == str(seed)


def test_the_default_file_wins_over_the_seeds_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".socket_el").mkdir()
    (tmp_path / ".chronopipe").mkdir()
    write(tmp_path / ".socket_el", name="profile.yml")
    write(tmp_path / ".chronopipe", SEED.replace("127.0.0.1", "db.example"))
    assert load_profiles(environ={})["postgres"]["host"] == "db.example"


def test_the_seeds_file_others_may_read_is_refused_with_the_chmod_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".socket_el").mkdir()
    seed = write(tmp_path / ".socket_el", name="profile.yml", mode=0o644)
    with pytest.raises(ProfileError, match=rf"^{seed}: group or others may read .*run: chmod 600 {seed}$"):
        load_profiles(environ={})


def test_an_unknown_profile_names_both_files_looked_in_when_neither_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ProfileError) as caught:
        load_profiles(environ={})["postgres"]
    assert (f"looked in {tmp_path}/.chronopipe/profiles.yml, not found, {tmp_path}/.socket_el/profile.yml, "
            "not found, and CHRONOPIPE_PROFILE_* variables") in str(caught.value)


def test_a_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ProfileError, match=r"^.*nope\.yml: no such profiles file$"):
        load_profiles(tmp_path / "nope.yml", environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n", ": must map profile names to their fields (postgres: {user: ..., host: ...})"),
        ("postgres: 5\n", ": profile 'postgres' must be a mapping of fields (user: ..., host: ...)"),
        ("pg:\n  password: [a, b]\n", ": profile 'pg': field 'password' must be a single value, not a list"),
        ("postgres:\n  host: a\n  host: b\n", ":3:3: duplicate key 'host' (first at line 2)"),
    ],
    ids=["a list", "a profile not a mapping", "a field not a single value", "a key twice"],
)
def test_a_malformed_file_is_one_line_naming_it(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profiles(path, environ={})
    assert str(caught.value) == f"{path}{expected}"


def test_an_empty_file_has_no_profiles(tmp_path):
    assert load_profiles(write(tmp_path, ""), environ={}) == {}


# -- the environment ------------------------------------------------------------------------
def test_a_variable_overrides_a_field_of_the_file(tmp_path):
    profiles = load_profiles(write(tmp_path), environ={"CHRONOPIPE_PROFILE_POSTGRES_HOST": "db.example"})
    assert profiles["postgres"]["host"] == "db.example" and profiles["postgres"]["user"] == "postgres"


def test_variables_create_a_profile_named_in_lower_case_with_its_secrets_secret(tmp_path):
    environ = {"CHRONOPIPE_PROFILE_WAREHOUSE_USER": "me", "CHRONOPIPE_PROFILE_WAREHOUSE_PASSWORD": PASSWORD}
    profile = load_profiles(write(tmp_path, ""), environ=environ)["warehouse"]
    assert profile["user"] == "me" and isinstance(profile["password"], Secret)
    assert profile["password"].reveal() == PASSWORD


@pytest.mark.parametrize("name", ["my_db", "my-db", "my.db"])
def test_a_file_profile_whose_name_has_underscores_is_matched_before_splitting_the_field(tmp_path, name):
    path = write(tmp_path, f"{name}:\n  host: a\n")
    profile = load_profiles(path, environ={"CHRONOPIPE_PROFILE_MY_DB_API_KEY": "k"})[name]
    assert profile["host"] == "a" and profile["api_key"] == Secret("k")


def test_the_longest_matching_profile_name_wins(tmp_path):
    path = write(tmp_path, "db:\n  host: a\ndb_main:\n  host: b\n")
    profiles = load_profiles(path, environ={"CHRONOPIPE_PROFILE_DB_MAIN_PORT": "1"})
    assert profiles["db_main"]["port"] == "1" and "port" not in profiles["db"].fields


@pytest.mark.parametrize("variable", ["CHRONOPIPE_PROFILE_WH", "CHRONOPIPE_PROFILE_", "CHRONOPIPE_PROFILE__HOST"])
def test_a_variable_naming_no_field_is_an_error_naming_the_variable(tmp_path, variable):
    with pytest.raises(ProfileError, match=rf"^{variable}: expected CHRONOPIPE_PROFILE_<NAME>_<FIELD>"):
        load_profiles(write(tmp_path, ""), environ={variable: "x"})


def test_other_variables_are_ignored(tmp_path):
    assert load_profiles(write(tmp_path, ""), environ={"CHRONOPIPE_PROFILES": "x", "PATH": "/bin"}) == {}


def test_the_environment_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONOPIPE_PROFILE_FROMENV_HOST", "h")
    assert load_profiles(write(tmp_path, ""))["fromenv"]["host"] == "h"


# -- looking a profile up -------------------------------------------------------------------
def test_an_unknown_profile_is_an_error_listing_the_known_ones(tmp_path):
    profiles = load_profiles(write(tmp_path), environ={"CHRONOPIPE_PROFILE_OTHER_HOST": "h"})
    with pytest.raises(ProfileError, match=r"^no profile 'pg' \(known: other, postgres; looked in .*profiles\.yml"):
        profiles["pg"]
    assert profiles.get("pg") is None and "pg" not in profiles


def test_an_unknown_field_is_a_key_error_naming_the_fields():
    with pytest.raises(KeyError, match="has no field 'host'"):
        Profile(name="p", fields={"user": "u"})["host"]


# -- connect options ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"dbname": "a", "database": "b"}, {"dbname": "a"}),
        ({"database": "b"}, {"dbname": "b"}),
        ({"port": "5433"}, {"port": 5433}),
        ({"user": "u"}, {"user": "u"}),
        ({"passwd": "pw"}, {"password": "pw"}),
        ({"schema": "my schema"}, {"options": r"-c search_path=my\ schema"}),
        ({"sslmode": "require", "connect_timeout": 5, "table": "t"}, {"sslmode": "require", "connect_timeout": "5"}),
        ({"keepalives_idle": 5, "tcp_user_timeout": 9000}, {"keepalives_idle": "5", "tcp_user_timeout": "9000"}),
        ({"dsn": "host=db password=pw"}, {"conninfo": "host=db password=pw"}),
        ({"conninfo": "host=db", "port": 5433}, {"conninfo": "host=db", "port": 5433}),
        ({}, {}),
    ],
    ids=["dbname first", "database", "port as int", "user", "passwd", "schema escaped", "libpq keys only",
         "keepalive keys", "dsn", "conninfo under the fields", "none"],
)
def test_connect_options_gives_the_fields_set_in_psycopgs_terms(fields, expected):
    assert Profile(name="p", fields=fields).connect_options() == expected


@pytest.mark.parametrize("port", ["x", "54.3", True, -1])
def test_a_port_that_is_not_a_whole_number_is_an_error_naming_the_profile(port):
    with pytest.raises(ProfileError, match=r"^profile 'p' \(f\.yml\): port must be a whole number"):
        Profile(name="p", fields={"port": port}, source="f.yml").connect_options()


@pytest.mark.parametrize("key", ["dsn", "conninfo", "warehouse_dsn"])
def test_a_connection_string_is_a_secret_since_it_may_hold_the_password(key):
    assert isinstance(Profile(name="p", fields={key: "postgresql://u:pw@db/x"})[key], Secret)


def test_the_password_typed_into_the_port_is_not_printed_by_the_port_check():
    with pytest.raises(ProfileError) as caught:
        Profile(name="p", fields={"port": "hunter2", "password": "hunter2"}).connect_options()
    assert str(caught.value) == "profile 'p': port must be a whole number, not '***'"


# -- Secret ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["password", "PASSWORD", "passwd", "secret", "token", "api_key", "key", "db_password",
                                 "access_token", "client_secret"])  # fmt: skip
def test_the_values_of_secret_keys_are_secrets(key):
    assert is_secret_key(key) and isinstance(Profile(name="p", fields={key: "v"}).fields[key], Secret)


@pytest.mark.parametrize("key", ["user", "host", "port", "database", "schema", "sslkey", "keyspace", "monkey"])
def test_other_keys_are_not(key):
    assert not is_secret_key(key) and Profile(name="p", fields={key: "v"}).fields[key] == "v"


def test_the_secret_keys_can_be_chosen(tmp_path):
    path = write(tmp_path, "p:\n  password: a\n  pin: b\n")
    fields = load_profiles(path, environ={}, secret_keys={"pin"})["p"].fields
    assert fields["password"] == "a" and fields["pin"] == Secret("b")


def test_a_numeric_secret_is_kept_as_its_text(tmp_path):
    path = write(tmp_path, "p:\n  password: 12345\n")
    assert load_profiles(path, environ={})["p"]["password"].reveal() == "12345"


@pytest.mark.parametrize(
    ("show", "shown"),
    [(repr, "***"), (str, "***"), ("{}".format, "***"), ("{!r}".format, "***"), ("{:>5}".format, "  ***"),
     (lambda s: f"{s}", "***"), (lambda s: str([s]), "[***]"),
     (lambda s: "%s %r" % (s, s), "*** ***")],  # noqa: UP031 - as logging does
    ids=["repr", "str", "format", "format !r", "format spec", "f-string", "in a list", "percent"],
)  # fmt: skip
def test_a_secret_shows_as_stars(show, shown):
    assert show(Secret(PASSWORD)) == shown


def test_secrets_compare_and_hash_by_value_and_a_secret_is_not_its_text():
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b") and hash(Secret("a")) == hash(Secret("a"))
    assert Secret("a") != "a"
    assert bool(Secret("")) is False and bool(Secret("a")) is True


def test_a_secret_holds_text_only():
    with pytest.raises(TypeError, match="a Secret holds a str, not int"):
        Secret(5)  # type: ignore[arg-type]


def test_a_pickled_secret_keeps_its_value_but_not_as_plain_text():
    data = pickle.dumps(Secret(PASSWORD))
    assert PASSWORD.encode() not in data and pickle.loads(data).reveal() == PASSWORD


def test_pickled_profiles_keep_their_secrets_and_their_source(tmp_path):
    profiles = load_profiles(write(tmp_path), environ={})
    copy = pickle.loads(pickle.dumps(profiles))
    assert isinstance(copy, Profiles) and copy.source == profiles.source
    assert copy["postgres"] == profiles["postgres"] and copy["postgres"]["password"].reveal() == "password"


def test_model_dump_keeps_the_secret_and_json_dumps_show_stars():
    profile = Profile(name="p", fields={"password": PASSWORD})
    assert isinstance(profile.model_dump()["fields"]["password"], Secret)
    assert json.loads(profile.model_dump_json())["fields"]["password"] == "***"
    assert json.loads(json.dumps(profile.model_dump(), default=str))["fields"]["password"] == "***"


def test_a_secret_in_a_model_of_yours_dumps_to_json_as_stars():
    class Settings(BaseModel):
        token: Secret

    settings = Settings(token=Secret(PASSWORD))
    assert settings.model_dump()["token"].reveal() == PASSWORD and settings.model_dump_json() == '{"token":"***"}'


def test_a_profile_shows_its_secrets_as_stars():
    assert repr(Profile(name="p", fields={"user": "u", "password": PASSWORD})) == (
        "Profile(name='p', fields={'user': 'u', 'password': ***}, source='')"
    )


def test_a_yaml_error_in_the_profiles_file_does_not_quote_the_line(tmp_path):
    path = write(tmp_path, f'p:\n  password: "{PASSWORD}\n')
    with pytest.raises(ProfileError) as caught:
        load_profiles(path, environ={})
    assert str(caught.value).startswith(f"{path}:3:1: ") and PASSWORD not in str(caught.value)


def test_the_password_never_shows_in_any_output(tmp_path, capsys, caplog):
    """Everything a profile may go through is written out, and the bytes are searched."""
    path = write(tmp_path, f"pg:\n  user: me\n  password: {PASSWORD}\n  port: nope\n")
    profiles = load_profiles(path, environ={})
    profile = profiles["pg"]
    assert profile["password"].reveal() == PASSWORD  # the secret is there, so the search can find it
    out = io.StringIO()
    logger = logging.getLogger("chronopipe.tests.secret")
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        for thing in (profile, profiles, profile.fields, profile["password"], profile.model_dump()):
            print(thing, repr(thing), f"{thing}", f"{thing!r}", "%s" % (thing,), file=out)  # noqa: UP031
            pprint.pprint(thing, stream=out)
            logger.warning("value %s %r", thing, thing)
            logger.warning(thing)
        print(profile.model_dump_json(), json.dumps(profile.model_dump(), default=str), file=out)
        print(str(pickle.loads(pickle.dumps(profile))), pickle.dumps(profile), file=out)
        for failing in (lambda: profiles["missing"], profile.connect_options, lambda: profile["nofield"],
                        lambda: Profile(name="pg", fields={**profile.fields, "bad": object()}),
                        lambda: json.dumps(profile.model_dump())):  # fmt: skip
            try:
                failing()
            except (ProfileError, KeyError, ValidationError, TypeError) as error:
                print(str(error), repr(error), traceback.format_exc(), file=out)
        try:
            raise RuntimeError(profile, profile["password"])
        except RuntimeError:
            logger.exception("failed with %s", profile)
            print(traceback.format_exc(), file=out)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn(f"about {profile}", stacklevel=1)
        print(*(str(w.message) for w in caught), file=out)
    finally:
        logger.removeHandler(handler)
    captured = capsys.readouterr()
    everything = (out.getvalue() + caplog.text + captured.out + captured.err).encode()
    assert b"***" in everything
    assert PASSWORD.encode() not in everything
    assert len(everything) > 2000  # all of the above did write


def test_connect_options_is_where_the_password_is_revealed():
    assert Profile(name="p", fields={"password": PASSWORD}).connect_options()["password"] == PASSWORD

