"""Sealed secrets: bound to their record, rotatable, and never leaking keys."""

import base64
import os
import re
import stat
import threading
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.crypto import (
    ENV_VAR,
    KEY_FILE_NAME,
    DecryptionError,
    EncryptionKeyError,
    Keyring,
    key_id,
    load_keyring,
)

AAD = "connections/3f2a9c/credentials"
SECRET = b"xai-mgmt-0123456789abcdef"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def payload_of(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.split(".")[2])


def with_payload(token: str, raw: bytes) -> str:
    version, kid, _ = token.split(".")
    return f"{version}.{kid}.{base64.urlsafe_b64encode(raw).decode()}"


@pytest.fixture
def key() -> bytes:
    return Keyring.generate_key()


@pytest.fixture
def keyring(key: bytes) -> Keyring:
    return Keyring([key])


# Sealing and opening


def test_a_sealed_secret_opens_with_the_same_record(keyring: Keyring, key: bytes) -> None:
    token = keyring.seal(SECRET, AAD)

    assert token.startswith(f"v1.{key_id(key)}.")
    assert SECRET not in token.encode()
    assert keyring.open(token, AAD) == SECRET


def test_json_round_trip(keyring: Keyring) -> None:
    credentials = {"management_key": "xai-mgmt-secret", "team_id": "team-1"}

    token = keyring.seal_json(credentials, AAD)

    assert keyring.open_json(token, AAD) == credentials


def test_each_seal_uses_a_fresh_nonce(keyring: Keyring) -> None:
    first, second = keyring.seal(SECRET, AAD), keyring.seal(SECRET, AAD)

    assert first != second
    assert payload_of(first)[:12] != payload_of(second)[:12]


def test_a_secret_copied_to_another_record_does_not_open(keyring: Keyring, key: bytes) -> None:
    token = keyring.seal(SECRET, AAD)

    with pytest.raises(DecryptionError, match="tampered with or copied from another record") as e:
        keyring.open(token, "connections/9999/credentials")
    assert e.value.key_id == key_id(key)


def test_changing_any_byte_of_the_payload_fails(keyring: Keyring) -> None:
    token = keyring.seal(SECRET, AAD)
    raw = payload_of(token)

    for index in range(len(raw)):
        flipped = raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1 :]
        with pytest.raises(DecryptionError):
            keyring.open(with_payload(token, flipped), AAD)


def test_changing_any_character_of_the_token_data_fails(keyring: Keyring) -> None:
    # Including the last character, whose low bits base64 would otherwise ignore.
    token = keyring.seal(SECRET, AAD)
    prefix, data = token.rsplit(".", 1)

    for index, char in enumerate(data):
        other = "B" if char == "A" else "A"
        with pytest.raises(DecryptionError):
            keyring.open(f"{prefix}.{data[:index]}{other}{data[index + 1 :]}", AAD)


def test_truncated_or_extended_tokens_fail(keyring: Keyring) -> None:
    token = keyring.seal(SECRET, AAD)
    raw = payload_of(token)

    for changed in (raw[:-1], raw + b"\x00", raw[:27]):
        with pytest.raises(DecryptionError):
            keyring.open(with_payload(token, changed), AAD)


def test_swapping_the_key_id_in_a_token_fails() -> None:
    first, second = Keyring.generate_key(), Keyring.generate_key()
    keyring = Keyring([first, second])
    token = keyring.seal(SECRET, AAD)

    swapped = token.replace(key_id(first), key_id(second))

    with pytest.raises(DecryptionError, match="tampered"):
        keyring.open(swapped, AAD)


def test_the_version_and_key_id_are_authenticated_with_the_record(
    keyring: Keyring, key: bytes
) -> None:
    token = keyring.seal(SECRET, AAD)
    raw = payload_of(token)
    cipher = AESGCM(key)

    with pytest.raises(InvalidTag):
        cipher.decrypt(raw[:12], raw[12:], AAD.encode())
    bound = f"v1.{key_id(key)}.{AAD}".encode()
    assert cipher.decrypt(raw[:12], raw[12:], bound) == SECRET


def test_a_token_from_an_unconfigured_key_names_that_key(keyring: Keyring) -> None:
    old = Keyring.generate_key()
    token = Keyring([old]).seal(SECRET, AAD)

    with pytest.raises(DecryptionError) as e:
        keyring.open(token, AAD)

    message = str(e.value)
    assert f"key with id {key_id(old)}" in message
    assert "not configured" in message
    assert ENV_VAR in message
    assert e.value.key_id == key_id(old)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "xai-mgmt-plaintext-stored-by-mistake",
        "v2.0123456789ab.AAAA",
        "v1.not-a-key-id.AAAA",
        "v1.0123456789ab.",
        "v1.0123456789ab.!!!!",
        "v1.0123456789ab.AAAA.extra",
    ],
)
def test_malformed_tokens_fail_without_echoing_them(keyring: Keyring, token: str) -> None:
    with pytest.raises(DecryptionError, match="Not an encrypted value") as e:
        keyring.open(token, AAD)

    if token:
        assert token not in str(e.value)


def test_open_json_does_not_quote_a_plaintext_that_is_not_json(keyring: Keyring) -> None:
    token = keyring.seal(b'{"management_key": "xai-mgmt-secret"', AAD)

    with pytest.raises(DecryptionError) as e:
        keyring.open_json(token, AAD)

    assert "xai-mgmt-secret" not in str(e.value)
    assert e.value.__cause__ is None


def test_an_empty_aad_is_refused(keyring: Keyring) -> None:
    with pytest.raises(ValueError, match="aad"):
        keyring.seal(SECRET, "")


# Rotation


def test_rotation_opens_old_tokens_and_seals_with_the_new_key() -> None:
    old, new = Keyring.generate_key(), Keyring.generate_key()
    old_token = Keyring([old]).seal(SECRET, AAD)

    rotated = Keyring([new, old])

    assert rotated.primary_key_id == key_id(new)
    assert rotated.key_ids == (key_id(new), key_id(old))
    assert rotated.open(old_token, AAD) == SECRET
    new_token = rotated.seal(SECRET, AAD)
    assert Keyring.key_id_of(new_token) == key_id(new)
    assert Keyring.key_id_of(old_token) == key_id(old)
    assert Keyring([new]).open(new_token, AAD) == SECRET


def test_key_id_of_something_that_is_not_a_token_is_none() -> None:
    assert Keyring.key_id_of("xai-mgmt-plaintext") is None
    assert Keyring.key_id_of("v1.XYZ.AAAA") is None


def test_key_ids_are_short_stable_and_not_the_key(key: bytes) -> None:
    assert key_id(key) == key_id(bytes(key))
    assert len(key_id(key)) == 12
    assert int(key_id(key), 16) >= 0
    assert key_id(key) not in key.hex()
    assert key_id(key) != key_id(Keyring.generate_key())


# Keys from the environment


def test_from_env_value_tolerates_spaces_newlines_and_stray_commas() -> None:
    first, second = Keyring.generate_key(), Keyring.generate_key()

    keyring = Keyring.from_env_value(f"  {b64(first)} ,\n {b64(second)} , ")

    assert keyring.key_ids == (key_id(first), key_id(second))


def test_from_env_value_accepts_urlsafe_keys_without_padding(key: bytes) -> None:
    value = base64.urlsafe_b64encode(key).decode().rstrip("=")

    assert Keyring.from_env_value(value).key_ids == (key_id(key),)


def test_bad_base64_says_which_key_and_how_to_make_one(key: bytes) -> None:
    with pytest.raises(EncryptionKeyError) as e:
        Keyring.from_env_value(f"{b64(key)},not*base64!")

    message = str(e.value)
    assert ENV_VAR in message
    assert "key 2 is not valid base64" in message
    assert "base64.b64encode(os.urandom(32))" in message
    assert "not*base64!" not in message


def test_a_key_of_the_wrong_length_says_how_long_it_is() -> None:
    short = b64(os.urandom(16))

    with pytest.raises(EncryptionKeyError) as e:
        Keyring.from_env_value(short)

    message = str(e.value)
    assert ENV_VAR in message
    assert "16 bytes" in message and "32" in message
    assert "os.urandom(32)" in message
    assert short not in message


@pytest.mark.parametrize("value", [" ", ",", " , ,"])
def test_a_value_with_no_keys_is_an_error(value: str) -> None:
    with pytest.raises(EncryptionKeyError, match=ENV_VAR):
        Keyring.from_env_value(value)


def test_keyring_rejects_keys_that_are_not_32_bytes() -> None:
    with pytest.raises(EncryptionKeyError, match="16 bytes"):
        Keyring([os.urandom(16)])
    with pytest.raises(EncryptionKeyError, match="No encryption key"):
        Keyring([])
    with pytest.raises(TypeError, match="list of keys"):
        Keyring(Keyring.generate_key())


def test_repr_shows_key_ids_only(key: bytes) -> None:
    text = repr(Keyring([key]))

    assert text == f"Keyring(key_ids=('{key_id(key)}',))"
    assert b64(key) not in text
    assert key.hex() not in text
    assert repr(key) not in text


# Loading the keyring


def test_the_environment_wins_over_the_key_file(tmp_path: Path, key: bytes) -> None:
    (tmp_path / KEY_FILE_NAME).write_text(b64(Keyring.generate_key()) + "\n")

    source = load_keyring({ENV_VAR: b64(key)}, tmp_path)

    assert source.origin == "env"
    assert source.warning is None
    assert source.keyring.key_ids == (key_id(key),)


def test_with_the_environment_set_no_key_file_is_created(tmp_path: Path, key: bytes) -> None:
    load_keyring({ENV_VAR: b64(key)}, tmp_path / "data")

    assert not (tmp_path / "data").exists()


def test_a_key_file_is_generated_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"

    first = load_keyring({}, data_dir)
    second = load_keyring({ENV_VAR: ""}, data_dir)

    path = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0
    text = path.read_text()
    assert text.endswith("\n")
    assert len(base64.b64decode(text.strip(), validate=True)) == 32
    assert first.origin == f"file:{path}"
    assert second.keyring.key_ids == first.keyring.key_ids
    assert second.keyring.open(first.keyring.seal(SECRET, AAD), AAD) == SECRET
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE_NAME]  # no temp files left


def test_using_the_key_file_always_warns_and_explains_the_way_out(tmp_path: Path) -> None:
    warning = load_keyring({}, tmp_path).warning

    assert warning is not None
    assert "beside the database" in warning
    assert f'{ENV_VAR} to "<new key>,<contents of {tmp_path / KEY_FILE_NAME}>"' in warning
    assert "xai-usage rotate-key" in warning
    assert "chmod" not in warning


def test_a_key_file_others_can_read_adds_a_chmod_fix(tmp_path: Path) -> None:
    load_keyring({}, tmp_path)
    path = tmp_path / KEY_FILE_NAME
    path.chmod(0o644)

    source = load_keyring({}, tmp_path)

    assert source.warning is not None
    assert f"chmod 600 {path}" in source.warning
    assert "0644" in source.warning


def test_an_existing_key_file_may_hold_several_keys(tmp_path: Path) -> None:
    new, old = Keyring.generate_key(), Keyring.generate_key()
    (tmp_path / KEY_FILE_NAME).write_text(f"{b64(new)},\n{b64(old)}\n")

    source = load_keyring({}, tmp_path)

    assert source.keyring.key_ids == (key_id(new), key_id(old))


def test_processes_racing_to_create_the_key_file_agree_on_one_key(tmp_path: Path) -> None:
    start = threading.Barrier(8)
    key_ids: list[tuple[str, ...]] = []

    def load() -> None:
        start.wait()
        key_ids.append(load_keyring({}, tmp_path).keyring.key_ids)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(key_ids) == 8 and len(set(key_ids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


def test_an_empty_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text("\n")

    with pytest.raises(EncryptionKeyError, match=r"is empty\. Restore it from a backup"):
        load_keyring({}, tmp_path)


def test_a_corrupt_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text(b64(os.urandom(20)) + "\n")

    with pytest.raises(
        EncryptionKeyError, match=re.escape(f"The key file {path}: key 1 decodes to 20")
    ):
        load_keyring({}, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_key_file_is_an_error(tmp_path: Path) -> None:
    load_keyring({}, tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(0)

    with pytest.raises(EncryptionKeyError, match="Cannot read the key file"):
        load_keyring({}, tmp_path)


def test_a_key_file_path_that_is_not_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).mkdir()

    with pytest.raises(EncryptionKeyError, match="Cannot read the key file"):
        load_keyring({}, tmp_path)


def test_a_data_dir_that_cannot_be_created_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(EncryptionKeyError, match=ENV_VAR):
        load_keyring({}, blocker / "data")


def test_the_generated_key_never_appears_in_messages(tmp_path: Path) -> None:
    source = load_keyring({}, tmp_path)
    encoded = (tmp_path / KEY_FILE_NAME).read_text().strip()
    raw = base64.b64decode(encoded)
    keyring = source.keyring
    token = keyring.seal(SECRET, AAD)
    foreign = Keyring([Keyring.generate_key()]).seal(SECRET, AAD)
    not_json = keyring.seal(b"not json", AAD)

    messages = [repr(keyring), source.warning or "", source.origin]
    for attempt in (
        lambda: keyring.open(token, "connections/other/credentials"),
        lambda: keyring.open(token[:-4] + "AAAA", AAD),
        lambda: keyring.open(foreign, AAD),
        lambda: keyring.open("garbage", AAD),
        lambda: keyring.open_json(not_json, AAD),
    ):
        with pytest.raises(DecryptionError) as e:
            attempt()
        messages.append(str(e.value))

    for message in messages:
        assert encoded not in message
        assert encoded[:16] not in message
        assert raw.hex()[:16] not in message
        assert SECRET.decode() not in message
