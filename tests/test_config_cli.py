"""Bad configs and bad command lines: one clear line on stderr, exit 2, no traceback."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness import ROOT, env, zpaxos_cmd
from zpaxos.cli import main
from zpaxos.runtime.config import ConfigError, load_config

GOOD = """
[node.0]
host = 127.0.0.1
port = 5001
data_dir = data/node0   ; a comment
[node.1]
host = 127.0.0.1
port = 5002
data_dir = data/node1
[node.2]
host = 127.0.0.1
port = 5003
data_dir = data/node2
[proposer]
timeout_s = 5
round_timeout_s = 0.5
max_rounds = 10
backoff_s = 0.05
[log]
file = paxos.log
level = INFO
format = text
"""


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_shipped_configs_load():
    for name in ("cluster.ini", "five-nodes.ini"):
        cfg = load_config(ROOT / "configs" / name)
        assert [n.id for n in cfg.nodes] == list(range(len(cfg.nodes)))
    cfg = load_config(ROOT / "configs" / "cluster.ini")
    assert [n.port for n in cfg.nodes] == [5001, 5002, 5003]
    assert cfg.proposer.round_timeout_s == 0.5
    # The lab's log file is what `zpaxos trace` reads, out of the box, in both clusters.
    assert [load_config(ROOT / "configs" / n).log.format
            for n in ("cluster.ini", "five-nodes.ini")] == ["json", "json"]


def test_log_file_is_json_by_default(tmp_path):
    p = tmp_path / "c.ini"
    p.write_text(GOOD.replace("format = text", ""))
    assert load_config(p).log.format == "json"


@pytest.mark.parametrize("host,endpoint,ipv6", [
    ("127.0.0.1", "tcp://127.0.0.1:5001", False),
    ("localhost", "tcp://localhost:5001", False),
    ("node-a.example.org", "tcp://node-a.example.org:5001", False),
    ("::1", "tcp://[::1]:5001", True),
    ("[::1]", "tcp://[::1]:5001", True),
    ("[0:0::1]", "tcp://[::1]:5001", True),
    ("fe80::1%eth0", "tcp://[fe80::1%eth0]:5001", True),
])
def test_hosts_and_their_endpoints(tmp_path, host, endpoint, ipv6):
    p = tmp_path / "c.ini"
    p.write_text(GOOD.replace("host = 127.0.0.1\nport = 5001", f"host = {host}\nport = 5001"))
    n = load_config(p).nodes[0]
    assert (n.endpoint, n.ipv6) == (endpoint, ipv6)


def test_ipv6_duplicates_are_found_whatever_the_spelling(tmp_path):
    p = tmp_path / "c.ini"
    p.write_text(GOOD.replace("host = 127.0.0.1\nport = 5001", "host = ::1\nport = 5001")
                 .replace("host = 127.0.0.1\nport = 5002", "host = [0::1]\nport = 5001"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: [node.1] port: [::1]:5001 is already used by [node.0]"


@pytest.mark.parametrize("host,problem", [
    ("not a host!", "'not a host!' is not an IP address or host name"),
    ("300.1.1.1", "'300.1.1.1' is not an IPv4 address"),
    ("::g", "'::g' is not an IPv6 address"),
    ("[::1", "'[::1' is not an IPv6 address"),
    ("[127.0.0.1]", "'[127.0.0.1]' is an IPv4 address in brackets (brackets are for IPv6 only)"),
    ("*", "'*' is not an IP address or host name"),
    ("-x.example", "'-x.example' is not an IP address or host name"),
])
@pytest.mark.parametrize("command", [["status"], ["propose", "x"], ["node", "0"]])
def test_bad_host_is_one_line_naming_file_section_key(tmp_path, capsys, host, problem, command):
    p = tmp_path / "bad.ini"
    p.write_text(GOOD.replace("host = 127.0.0.1\nport = 5002", f"host = {host}\nport = 5002"))
    code, out, err = run_cli(capsys, *command, "--config", str(p))
    assert (code, out) == (2, "")
    assert err == f"zpaxos {command[0]}: error: {p}: [node.1] host: {problem}\n"


def test_env_var_picks_the_config(tmp_path, monkeypatch):
    p = tmp_path / "c.ini"
    p.write_text(GOOD.replace("5003", "6003"))
    monkeypatch.setenv("ZPAXOS_CONFIG", str(p))
    assert load_config().nodes[2].port == 6003


@pytest.mark.parametrize("edit,expect", [
    (lambda s: s.replace("port = 5002", "port = 70000"), "[node.1] port: '70000' is not a port"),
    (lambda s: s.replace("port = 5002", "port = abc"), "[node.1] port: 'abc' is not a port"),
    (lambda s: s.replace("timeout_s = 5", "timeout_s = soon"),
     "[proposer] timeout_s: 'soon' is not a number"),
    (lambda s: s.replace("max_rounds = 10", "max_rounds = 2.5"),
     "[proposer] max_rounds: '2.5' is not a whole number"),
    (lambda s: s.replace("backoff_s = 0.05", "backoff_s = -1"),
     "[proposer] backoff_s: '-1' must be at least 0"),
    (lambda s: s.replace("[node.1]", "[node.3]"), "[node.1] is missing"),
    (lambda s: s.replace("[node.2]", "[node.1]"), "section [node.1] appears twice"),
    (lambda s: s + "\n[nodes]\nx = 1\n", "[nodes]: unknown section"),
    (lambda s: s.replace("level = INFO", "level = LOUD"), "[log] level: 'LOUD' is not one of"),
    (lambda s: s.replace("format = text", "format = yaml"), "[log] format: 'yaml' is not one of"),
    (lambda s: s.replace("host = 127.0.0.1\nport = 5002", "hots = x\nport = 5002"),
     "[node.1] hots: unknown key"),
    (lambda s: s.replace("port = 5002", "port = 5001"),
     "[node.1] port: 127.0.0.1:5001 is already used by [node.0]"),
    (lambda s: s.replace("data_dir = data/node1", ""), "[node.1] data_dir: missing"),
    (lambda s: s.replace("max_rounds = 10", "max_rounds = 10\nmax_rounds = 3"),
     "[proposer] max_rounds: key appears twice"),
    (lambda s: "junk\n" + s, "text before the first [section]"),
    (lambda s: "", "no [node.N] sections"),
])
def test_config_errors_name_file_section_key(tmp_path, capsys, edit, expect):
    p = tmp_path / "bad.ini"
    p.write_text(edit(GOOD))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and expect in str(e.value)
    code, out, err = run_cli(capsys, "propose", "x", "--config", str(p))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expect in err and "Traceback" not in err


@pytest.mark.parametrize("header", ["[node.1", "[node.1   ; the second node", "[node.1)"])
def test_unclosed_section_header_is_named_with_its_line(tmp_path, capsys, header):
    """configparser reads ``[node.1`` as a line of [node.0] and then reports node.1's
    keys as node.0's, appearing twice: the real mistake is the header, on line 6."""
    p = tmp_path / "bad.ini"
    p.write_text(GOOD.replace("[node.1]", header))
    code, out, err = run_cli(capsys, "status", "--config", str(p))
    bare = header.split(";")[0].rstrip()
    assert (code, out) == (2, "")
    assert err == (f"zpaxos status: error: {p}: line 6: section header '{bare}' has no"
                   f" closing ']'\n")
    # A value continued on an indented line may start with '[': no header, no error.
    p.write_text(GOOD.replace("level = INFO", "level =\n    [not a header\nx = 1"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "has no closing" not in str(e.value)


def test_missing_config_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "node", "0", "--config", str(tmp_path / "nope.ini"))
    assert code == 2 and "config file not found" in err and err.count("\n") == 1


def test_api_relative_config_path_says_where_it_looked(tmp_path, monkeypatch):
    """From another directory, load_config("configs/cluster.ini") fails naming the full
    path it tried (relative paths are from the current directory), with the ConfigError
    the public API exports (issue 26, item 10)."""
    from zpaxos import client

    monkeypatch.chdir(tmp_path)
    with pytest.raises(client.ConfigError) as e:
        client.load_config("configs/cluster.ini")
    assert str(e.value) == (f"configs/cluster.ini: config file not found (looked for"
                            f" {tmp_path}/configs/cluster.ini; give one with --config or"
                            f" $ZPAXOS_CONFIG)")
    assert client.ConfigError is ConfigError and "ConfigError" in client.__all__
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cluster.ini").write_text(GOOD)
    assert len(client.load_config("configs/cluster.ini").nodes) == 3


def test_unknown_node_id(tmp_path, capsys):
    p = tmp_path / "c.ini"
    p.write_text(GOOD)
    code, _, err = run_cli(capsys, "node", "7", "--config", str(p))
    assert code == 2 and "there is no [node.7]" in err and err.count("\n") == 1


@pytest.mark.parametrize("args,expect", [
    (["propose", "x", "--key", "a/../b"], "may hold only letters"),
    (["propose", "x", "--key", ".hidden"], "must not start with a dot"),
    (["propose", "x", "--key", "k" * 129], "at most 128 characters"),
    (["propose", "x", "--prepare-delay", "1"], "is not NODE:SECONDS"),
    (["propose", "x", "--accept-delay", "9:1"], "--accept-delay: no node 9"),
    (["propose", "x", "--delay", "-1"], "--delay"),
    (["propose", "x", "--max-rounds", "0"], "--max-rounds"),
    (["propose"], "give the value to propose as VALUE or with --value-file"),
    (["propose", "x", "--value-file", "-"], "exactly one of them"),
    (["node", "zero"], "'zero' is not a valid integer"),
])
def test_bad_command_lines(tmp_path, capsys, args, expect):
    p = tmp_path / "c.ini"
    p.write_text(GOOD)
    code, out, err = run_cli(capsys, *args, "--config", str(p))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expect in err, err


@pytest.mark.parametrize("args,line", [
    (["propse", "X"], "zpaxos: error: No such command 'propse'. Did you mean 'propose'? "
                      "(see 'zpaxos propose --help')"),
    (["stats"], "zpaxos: error: No such command 'stats'. Did you mean 'status'? "
                "(see 'zpaxos status --help')"),
    (["frobnicate"], "zpaxos: error: No such command 'frobnicate'. (commands: bench, cas, "
                     "delete, elect, export, get, import, keygen, leader, lock, log, node, "
                     "propose, scenarios, set, sim, status, trace, watch; see 'zpaxos --help')"),
    (["propose"], "zpaxos propose: error: give the value to propose as VALUE or with "
                  "--value-file (exactly one of them) (see 'zpaxos propose --help')"),
    (["propose", "x", "-v", "-q"], "zpaxos propose: error: -v and -q cannot be used together "
                                   "(see 'zpaxos propose --help')"),
])
def test_usage_errors_point_at_help_that_works(capsys, args, line):
    code, out, err = run_cli(capsys, *args)
    assert (code, out, err) == (2, "", line + "\n")
    hint = line.rsplit("see '", 1)[1].split("'")[0].split()[1:]  # e.g. ["propose", "--help"]
    code, out, err = run_cli(capsys, *hint)
    assert code == 0 and out.startswith("Usage: zpaxos") and err == ""


def test_root_cli_py_and_module_entry_point_work(tmp_path):
    """The design's `python cli.py ...` from the repo root, as a real process."""
    p = tmp_path / "bad.ini"
    p.write_text(GOOD.replace("port = 5003", "port = 0"))
    for cmd in ([zpaxos_cmd()[0], str(ROOT / "cli.py")], zpaxos_cmd()):
        r = subprocess.run([*cmd, "status", "--config", str(p)], env=env(), cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "[node.2] port: '0' is not a port" in r.stderr
        assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_the_hint_suggests_the_command_whatever_clicks_version_says():
    """click before 8.2 does not ask "Did you mean"; the hint does then."""
    from zpaxos.cli.app import _usage_hint

    assert _usage_hint(["propse"], "No such command 'propse'.") == (
        "zpaxos", "No such command 'propse'. Did you mean 'propose'? "
                  "(see 'zpaxos propose --help')")


def test_keygen_help_shows_dir_is_needed_only_without_config(capsys):
    """DIR is optional with --config: the usage line shows both ways (issue 26, item 10)."""
    code, out, err = run_cli(capsys, "keygen", "--help")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == ("Usage: zpaxos keygen (DIR --name NAME... | --config PATH)"
                                   " [--force]")
