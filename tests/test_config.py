"""adjutant.conf: typed keys, defaults, environment overrides, and errors that say what to fix."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path

import pytest
from koji_adjutant.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    AdjutantConfig,
    ConfigError,
    check_image_reference,
    image_allowed,
    load_config,
    parse_size,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "config.md"
EXAMPLE = Path(__file__).resolve().parent.parent / "kojid_patch" / "adjutant.conf"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "adjutant.conf"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_missing_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(str(tmp_path / "absent.conf"), environ={})
    assert config == AdjutantConfig()
    assert config.podman_socket == "unix:///run/podman/podman.sock"
    assert config.worker_id == socket.gethostname()
    assert config.task_image is None
    assert config.pull_policy == "if-not-present"
    # every task container is limited by default: 75% of the memory, all CPUs but half of one
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert config.pids_limit == 4096 and config.memory_limit == memory // 100 * 75
    assert config.cpus == max(1.0, len(os.sched_getaffinity(0)) - 0.5)
    assert (config.podman_timeout, config.dnf_timeout) == (60, 7200)
    assert config.image_allowlist is None
    assert config.network == "auto" and config.buildroot_cache is True
    assert config.buildroot_mode == "tag"
    assert config.userns_base == 1_000_000_000
    assert (config.buildroot_cache_max_entries, config.buildroot_cache_max_bytes) == (8, 20 << 30)
    assert config.reap_on_start is True


def test_every_key_is_parsed_to_its_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[adjutant]
podman_socket = /run/user/0/podman/podman.sock
buildroot_mode = image
worker_id = builder-01.example.com
task_image = quay.io/fedora/fedora:40
pull_policy = always
selinux_label = Z
memory_limit = 4G
cpus = 1.5
pids_limit = none
network = none
buildroot_topurl = https://koji.example.com/kojifiles/
log_dir = /var/log/koji-adjutant/
log_cap_bytes = 512MiB
buildroot_cache = no
buildroot_cache_max_entries = 5
buildroot_cache_max_bytes = 10G
buildroot_cache_dir = /var/lib/koji-adjutant/cache
createrepo_timeout = 7200
image_external_repo = fedora-image-rpms
reap_on_start = off
userns_base = none
image_allowlist = quay.io, registry.example.com/koji/ localhost/koji-adjutant-task:dev
podman_timeout = 30
dnf_timeout = 600
""",
    )
    config = load_config(path, environ={})
    assert config == AdjutantConfig(
        podman_socket="/run/user/0/podman/podman.sock",
        buildroot_mode="image",
        worker_id="builder-01.example.com",
        task_image="quay.io/fedora/fedora:40",
        pull_policy="always",
        selinux_label="Z",
        memory_limit=4 * 1024**3,
        cpus=1.5,
        pids_limit=None,
        network="none",
        buildroot_topurl="https://koji.example.com/kojifiles",
        log_dir="/var/log/koji-adjutant",
        log_cap_bytes=512 * 1024**2,
        buildroot_cache=False,
        buildroot_cache_max_entries=5,
        buildroot_cache_max_bytes=10 * 1024**3,
        buildroot_cache_dir="/var/lib/koji-adjutant/cache",
        createrepo_timeout=7200,
        image_external_repo="fedora-image-rpms",
        reap_on_start=False,
        userns_base=None,
        image_allowlist=(
            "quay.io",
            "registry.example.com/koji/",
            "localhost/koji-adjutant-task:dev",
        ),
        podman_timeout=30,
        dnf_timeout=600,
    )


def test_limits_may_be_shares_of_the_builder_or_none(tmp_path: Path) -> None:
    path = write(tmp_path, "[adjutant]\nmemory_limit = 50%\ncpus = 50%\n")
    config = load_config(path, environ={})
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert config.memory_limit == memory // 2
    assert config.cpus == round(len(os.sched_getaffinity(0)) / 2, 2)
    unlimited = write(tmp_path, "[adjutant]\nmemory_limit = none\ncpus = none\n")
    config = load_config(unlimited, environ={})
    assert config.memory_limit is None and config.cpus is None


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("quay.io/fedora/fedora:40", True),  # registry
        ("quay.io:443/fedora/fedora:40", False),  # another host:port
        ("registry.example.com/koji/el9:9.4", True),  # namespace
        ("registry.example.com/kojifake/el9:9.4", False),
        ("registry.example.com/other/el9", False),
        ("localhost/koji-adjutant-task:dev", True),  # exact
        ("localhost/koji-adjutant-task:other", False),
        ("docker.io/library/fedora:40", True),  # repository: every tag and digest
        ("docker.io/library/fedora@sha256:" + "0" * 64, True),
        ("docker.io/library/fedora:40@sha256:" + "0" * 64, True),
        ("docker.io/library/centos:7", False),
        ("fedora:40", False),  # a short name: registries.conf would choose the registry
        ("quay.io", False),
    ],
)
def test_the_allowlist_names_registries_namespaces_repositories_or_references(
    image: str, allowed: bool
) -> None:
    allowlist = (
        "quay.io",
        "registry.example.com/koji/",
        "localhost/koji-adjutant-task:dev",
        "docker.io/library/fedora",
    )
    assert image_allowed(image, allowlist) is allowed


def test_a_task_image_outside_the_allowlist_is_a_config_error(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[adjutant]\ntask_image = quay.io/fedora/fedora:40\nimage_allowlist = localhost\n"
    )
    with pytest.raises(ConfigError, match=r"task_image = 'quay\.io/fedora/fedora:40' is not in"):
        load_config(path, environ={})


def test_environment_overrides_the_file_and_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[adjutant]\ntask_image = localhost/a:1\ncpus = 2\n")
    env = {
        CONFIG_ENV: path,
        "KOJI_ADJUTANT_TASK_IMAGE": "localhost/b:2",
        "KOJI_ADJUTANT_PULL_POLICY": "never",
        "KOJI_ADJUTANT_UNRELATED": "ignored",
    }
    config = load_config(environ=env)
    assert (config.task_image, config.pull_policy, config.cpus) == ("localhost/b:2", "never", 2.0)


def test_image_external_repo_needs_image_mode(tmp_path: Path) -> None:
    path = write(tmp_path, "[adjutant]\nimage_external_repo = fedora-image-rpms\n")
    with pytest.raises(ConfigError, match="applies to buildroot_mode = image only"):
        load_config(path, environ={})
    assert load_config(path, environ={"KOJI_ADJUTANT_BUILDROOT_MODE": "image"}).buildroot_mode == (
        "image"
    )
    bad = write(tmp_path, "[adjutant]\nbuildroot_mode = mock\n")
    with pytest.raises(ConfigError, match="invalid value for buildroot_mode: 'mock'"):
        load_config(bad, environ={})


def test_default_path_is_under_kojid_plugins() -> None:
    assert DEFAULT_CONFIG_PATH == "/etc/kojid/plugins/adjutant.conf"


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("pull_policy", "sometimes", "one of always, if-not-present, never"),
        ("memory_limit", "4X", "size in bytes"),
        ("memory_limit", "0", "greater than 0"),
        ("cpus", "-1", "number greater than 0"),
        ("cpus", "nan", "number greater than 0"),
        ("pids_limit", "1.5", "whole number"),
        ("network", "host", "one of auto, none, repo"),
        ("buildroot_topurl", "ftp://x/y", "http:// or https:// URL"),
        ("selinux_label", "shared", "one of z, Z"),
        ("log_dir", "relative/dir", "absolute path"),
        ("podman_socket", "tcp://host:1", "absolute socket path"),
        ("worker_id", "has space", "letters, digits"),
        ("buildroot_cache", "maybe", "boolean"),
        ("task_image", "Fedora:40", "image reference"),
        ("createrepo_timeout", "0", "whole number greater than 0"),
        ("buildroot_cache_max_entries", "none", "whole number greater than 0"),
        ("userns_base", "4294967295", "host uid up to 4294901759"),
        ("userns_base", "-3", "whole number greater than 0"),
        ("buildroot_mode", "mock", "one of tag, image"),
        ("memory_limit", "120%", "at most 100"),
        ("cpus", "lots%", "percentage"),
        ("image_allowlist", "fedora", "names no registry"),
        ("image_allowlist", "quay.io/Bad Name", "not a registry"),
        ("podman_timeout", "0", "whole number greater than 0"),
        ("dnf_timeout", "soon", "whole number greater than 0"),
    ],
)
def test_bad_value_names_key_value_and_rule(
    tmp_path: Path, key: str, value: str, rule: str
) -> None:
    path = write(tmp_path, f"[adjutant]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, environ={})
    message = str(excinfo.value)
    assert path in message and key in message and repr(value) in message
    assert rule in message
    # the same value through the environment names the variable instead of the file
    with pytest.raises(ConfigError, match=f"KOJI_ADJUTANT_{key.upper()}"):
        load_config(str(tmp_path / "absent"), environ={f"KOJI_ADJUTANT_{key.upper()}": value})


def test_unknown_key_and_section_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'memory' in \[adjutant\]; known keys"):
        load_config(write(tmp_path, "[adjutant]\nmemory = 4G\n"), environ={})
    with pytest.raises(ConfigError, match=r"unknown section \[kojid\]"):
        load_config(write(tmp_path, "[kojid]\nmaxjobs = 2\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(write(tmp_path, "no section header\n"), environ={})


def test_sizes_use_binary_units() -> None:
    assert parse_size("1024") == 1024
    assert parse_size("2k") == 2048
    assert parse_size("3 MB") == 3 * 1024**2
    assert parse_size("1GiB") == 1024**3
    assert parse_size("1t") == 1024**4
    with pytest.raises(ValueError):
        parse_size("1.5G")


@pytest.mark.parametrize(
    "image",
    [
        "fedora",
        "localhost/koji-adjutant-task:dev",
        "registry.example.com:5000/builders/el9:9.4-1",
        "quay.io/fedora/fedora@sha256:" + "0" * 64,
    ],
)
def test_image_references_accepted(image: str) -> None:
    assert check_image_reference(image) == image


@pytest.mark.parametrize("image", ["", "Fedora", "a b", "quay.io/", "x:tag with space", "a" * 256])
def test_image_references_refused(image: str) -> None:
    with pytest.raises(ValueError, match="image reference"):
        check_image_reference(image)


def _documented_keys(text: str) -> dict[str, str]:
    """`key` | default rows of the keys table in docs/config.md."""
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", text, re.MULTILINE)
    return {key: default.strip() for key, default in rows}


def test_docs_and_example_list_every_key() -> None:
    keys = {f.name for f in dataclasses.fields(AdjutantConfig)}
    documented = _documented_keys(DOCS.read_text(encoding="utf-8"))
    assert set(documented) == keys
    example = EXAMPLE.read_text(encoding="utf-8")
    for key in keys:
        assert re.search(rf"^;? ?{key} =", example, re.MULTILINE), key
    # the example, uncommented, must itself be a valid config
    assert load_config(str(EXAMPLE), environ={}).task_image is not None
