"""Validation and normalisation of policy documents (POLICY.md §1, §2.2–2.5, §4, §5).

``parse_policy`` is the only producer of :class:`~openshell.policy.model.Policy`.
It walks the whole document, collecting every problem (so a user fixes them in
one round), and raises one :class:`PolicyError` whose first entry names the field.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

from openshell.policy import defaults as D
from openshell.policy.destination import overlapping_blocked
from openshell.policy.errors import MAX_ERRORS, FieldError, PolicyError
from openshell.policy.hosts import normalise_host, pattern_error
from openshell.policy.model import (
    Binary,
    Endpoint,
    FilesystemPolicy,
    HttpRule,
    LandlockPolicy,
    NetworkRule,
    Policy,
    ProcessPolicy,
    QueryMatcher,
)

#: replaced in tests; the §4 baseline only adds paths that exist here
path_exists: Callable[[str], bool] = os.path.exists

_RULE_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_METHOD_RE = re.compile(r"^[A-Za-z]{1,32}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: Linux ids are 32 bits and (uid_t)-1 means "no change" to setresuid; 0 is root
MAX_ID = 4294967294

_TOP_KEYS = ("version", "filesystem_policy", "landlock", "process", "network_policies")
_FS_KEYS = ("include_workdir", "read_only", "read_write")
_LANDLOCK_KEYS = ("compatibility",)
_PROCESS_KEYS = ("run_as_user", "run_as_group")
_RULE_KEYS = ("name", "endpoints", "binaries")
_ENDPOINT_KEYS = ("host", "port", "ports", "protocol", "enforcement", "access", "rules", "deny_rules", "allowed_ips", "tls")
_BINARY_KEYS = ("path",)
_ALLOW_ITEM_KEYS = ("allow",)
_HTTP_RULE_KEYS = ("method", "path", "query")
_QUERY_ANY_KEYS = ("any",)
#: endpoint settings that decide how a connection is handled, whichever rule matched it
_CONNECTION_SETTINGS = ("protocol", "tls", "enforcement")


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _accepted(values: tuple[str, ...]) -> str:
    return " | ".join(values)


class _Walker:
    """Collects errors while the document is walked; one instance per parse."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def err(self, field: str, message: str) -> None:
        # Beyond MAX_ERRORS nobody reads them, and keeping them would let a big
        # document of bad entries grow the error without bound.
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(FieldError(field, message))

    # ------------------------------------------------------------------ generic shapes

    def mapping(self, value: Any, field: str, keys: tuple[str, ...] | None, what: str) -> dict | None:
        """Return ``value`` when it is a mapping, else report it and return None.

        ``keys`` are the accepted keys (each other key is reported); None accepts any
        string key (maps keyed by the user, such as ``network_policies``).
        """
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            shape = f"a mapping with keys {', '.join(keys)}" if keys else "a mapping"
            self.err(field or "document", f"{what} must be {shape}; got {type(value).__name__}")
            return None
        if keys is None:
            return dict(value)
        for key in value:
            if not isinstance(key, str):
                self.err(_join(field, str(key)), f"keys must be strings; accepted keys: {', '.join(keys)}")
            elif key not in keys:
                self.err(_join(field, key), f"unknown key '{key}' in {what}; accepted: {', '.join(keys)}")
        return dict(value)

    def seq(self, value: Any, field: str, what: str) -> list:
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            self.err(field, f"{what} must be a list; got {type(value).__name__}")
            return []
        return list(value)

    def enum(self, value: Any, field: str, name: str, accepted: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or value not in accepted:
            self.err(field, f"unknown {name} {value!r}; accepted: {_accepted(accepted)}")
            return default
        return value

    def boolean(self, value: Any, field: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.err(field, f"must be true or false; got {value!r}")
            return default
        return value

    # ------------------------------------------------------------------ version

    def version(self, doc: dict) -> int:
        if "version" not in doc:
            self.err("version", "version is required; accepted: 1")
            return 1
        v = doc["version"]
        if isinstance(v, bool) or v != 1 or not isinstance(v, int):
            self.err("version", f"unsupported version {v!r}; only version 1 is accepted")
        return 1

    # ------------------------------------------------------------------ filesystem (§4)

    def path(self, value: Any, field: str, what: str) -> str | None:
        """Validate one absolute path and return it normalised (``//``, ``.``, trailing ``/`` removed)."""
        if not isinstance(value, str) or not value:
            self.err(field, f"{what} must be a non-empty absolute path string; got {value!r}")
            return None
        if _CONTROL_RE.search(value):
            self.err(field, f"{what} {value!r} contains control characters")
            return None
        if not value.startswith("/"):
            self.err(field, f'{what} "{value}" is not absolute; accepted: a path starting with "/"')
            return None
        if ".." in value.split("/"):
            self.err(field, f'{what} "{value}" contains ".."; write the resolved absolute path')
            return None
        norm = posixpath.normpath(value)
        if norm.startswith("//"):  # POSIX keeps a leading "//"; we do not
            norm = "/" + norm.lstrip("/")
        return norm

    def filesystem(self, doc: dict) -> FilesystemPolicy:
        present = "filesystem_policy" in doc
        fs = self.mapping(doc.get("filesystem_policy"), "filesystem_policy", _FS_KEYS, "filesystem_policy")
        if fs is None:
            fs = {}
        # POLICY.md §1: default true when the section is omitted, false when present but unset.
        include = self.boolean(fs.get("include_workdir"), "filesystem_policy.include_workdir", not present)
        lists: dict[str, list[str]] = {}
        for name in ("read_only", "read_write"):
            field = f"filesystem_policy.{name}"
            out: list[str] = []
            for i, item in enumerate(self.seq(fs.get(name), field, name)):
                p = self.path(item, f"{field}[{i}]", "path")
                if p is None:
                    continue
                if p == "/":
                    self.err(f"{field}[{i}]", 'path "/" is too broad; list the directories the sandbox needs instead')
                    continue
                if p not in out:
                    out.append(p)
            lists[name] = out
        ro, rw = lists["read_only"], lists["read_write"]
        if include and D.WORKDIR not in rw:
            rw.append(D.WORKDIR)
        listed = set(ro) | set(rw)
        for p in D.BASELINE_READ_ONLY:
            if p not in listed and path_exists(p):
                ro.append(p)
        for p in D.BASELINE_READ_WRITE:
            if p not in listed and path_exists(p):
                rw.append(p)
        return FilesystemPolicy(include_workdir=include, read_only=tuple(ro), read_write=tuple(rw))

    # ------------------------------------------------------------------ landlock, process (§5)

    def landlock(self, doc: dict) -> LandlockPolicy:
        ll = self.mapping(doc.get("landlock"), "landlock", _LANDLOCK_KEYS, "landlock") or {}
        return LandlockPolicy(
            compatibility=self.enum(ll.get("compatibility"), "landlock.compatibility", "compatibility", D.COMPATIBILITY_VALUES, D.DEFAULT_COMPATIBILITY)
        )

    def identity(self, value: Any, field: str, name: str, what: str) -> str:
        accepted = f'{name} must be "sandbox" or a numeric {what} 1-{MAX_ID}, never 0 / root'
        if value is None:
            return D.DEFAULT_USER
        if isinstance(value, bool):
            self.err(field, f"{accepted}; got {value!r}")
        elif isinstance(value, int):
            if 1 <= value <= MAX_ID:
                return str(value)
            self.err(field, f"{accepted}; got {value}")
        elif isinstance(value, str):
            if value == D.DEFAULT_USER:
                return value
            if value.isdigit() and value.isascii() and len(value) <= 10 and 1 <= int(value) <= MAX_ID:
                return str(int(value))
            self.err(field, f"{accepted}; got {value!r}")
        else:
            self.err(field, f"{accepted}; got {type(value).__name__}")
        return D.DEFAULT_USER

    def process(self, doc: dict) -> ProcessPolicy:
        pr = self.mapping(doc.get("process"), "process", _PROCESS_KEYS, "process") or {}
        return ProcessPolicy(
            run_as_user=self.identity(pr.get("run_as_user"), "process.run_as_user", "run_as_user", "uid"),
            run_as_group=self.identity(pr.get("run_as_group"), "process.run_as_group", "run_as_group", "gid"),
        )

    # ------------------------------------------------------------------ network (§2, §3)

    def port(self, value: Any, field: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (ranges are not supported; list each port in ports)" if isinstance(value, str) and "-" in value else ""
            self.err(field, f"port must be an integer 1-65535; got {value!r}{hint}")
            return None
        if not 1 <= value <= 65535:
            self.err(field, f"port {value} is out of range; accepted: 1-65535")
            return None
        return value

    def ports(self, ep: dict, field: str) -> tuple[int, ...]:
        single = self.port(ep["port"], f"{field}.port") if "port" in ep else None
        if "ports" in ep:
            raw = ep["ports"]
            if not isinstance(raw, (list, tuple)) or not raw:
                self.err(f"{field}.ports", f"ports must be a non-empty list of integers 1-65535; got {raw!r}")
                return ()
            out: list[int] = []
            for i, p in enumerate(raw):
                v = self.port(p, f"{field}.ports[{i}]")
                if v is not None and v not in out:
                    out.append(v)
            if single is not None and single not in out:
                self.err(f"{field}.port", f"port {single} is not in ports {out}; give port or ports, not both")
            return tuple(out)
        if "port" in ep:
            return (single,) if single is not None else ()
        self.err(field, "endpoint has no port; accepted: port: N or ports: [N, ...] (1-65535)")
        return ()

    def glob_text(self, value: Any, field: str, what: str) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            self.err(field, f"{what} must be a non-empty string glob; got {value!r}")
            return None
        if _CONTROL_RE.search(value):
            self.err(field, f"{what} {value!r} contains control characters")
            return None
        return value

    def query(self, value: Any, field: str) -> tuple[tuple[str, QueryMatcher], ...]:
        q = self.mapping(value, field, None, "query")
        if q is None:
            return ()
        out: list[tuple[str, QueryMatcher]] = []
        for key, matcher in q.items():
            kf = _join(field, str(key))
            if not isinstance(key, str) or not key:
                self.err(kf, "query keys must be non-empty strings")
                continue
            if isinstance(matcher, Mapping):
                m = self.mapping(matcher, kf, _QUERY_ANY_KEYS, "query matcher") or {}
                globs = []
                for i, g in enumerate(self.seq(m.get("any"), f"{kf}.any", "any")):
                    t = self.glob_text(g, f"{kf}.any[{i}]", "query glob")
                    if t is not None:
                        globs.append(t)
                if not globs:
                    self.err(f"{kf}.any", "any must list at least one glob")
                    continue
                out.append((key, QueryMatcher(tuple(globs))))
            else:
                t = self.glob_text(matcher, kf, "query matcher (a glob string or {any: [...]})")
                if t is not None:
                    out.append((key, QueryMatcher((t,))))
        return tuple(out)

    def http_rule(self, value: Any, field: str) -> HttpRule | None:
        if value is None:
            # "- allow:" with nothing after it must not become "allow everything".
            self.err(field, "HTTP rule is empty; accepted: a mapping with method, path and optional query")
            return None
        r = self.mapping(value, field, _HTTP_RULE_KEYS, "HTTP rule")
        if r is None:
            return None
        method = r.get("method", "*")
        if not isinstance(method, str) or not (method == "*" or _METHOD_RE.match(method)):
            self.err(f"{field}.method", f"method must be an HTTP method such as GET, or * for any; got {method!r}")
            method = "*"
        path = r.get("path", "**")
        if not isinstance(path, str) or not (path.startswith("/") or path == "**"):
            self.err(f"{field}.path", f'path must be a glob starting with "/" (or "**" for any path); got {path!r}')
            path = "**"
        elif _CONTROL_RE.search(path):
            self.err(f"{field}.path", f"path {path!r} contains control characters")
        elif any(seg in (".", "..") for seg in path.split("/")) or "//" in path:
            # Requests are matched after canonicalisation, so such a glob could never match:
            # a deny rule written that way would silently protect nothing.
            self.err(f"{field}.path", f'path {path!r} is not canonical (".", ".." or "//"); write the canonical path')
        query = self.query(r.get("query"), f"{field}.query") if "query" in r else ()
        return HttpRule(method=method.upper(), path=path, query=query)

    def allow_rules(self, value: Any, field: str) -> tuple[HttpRule, ...]:
        out = []
        for i, item in enumerate(self.seq(value, field, "rules")):
            f = f"{field}[{i}]"
            m = self.mapping(item, f, _ALLOW_ITEM_KEYS, "rules entry")
            if m is None:
                continue
            if "allow" not in m:
                self.err(f, "rules entry needs an allow: {method, path, query} mapping")
                continue
            rule = self.http_rule(m["allow"], f"{f}.allow")
            if rule is not None:
                out.append(rule)
        return tuple(out)

    def deny_rules(self, value: Any, field: str) -> tuple[HttpRule, ...]:
        out = []
        for i, item in enumerate(self.seq(value, field, "deny_rules")):
            rule = self.http_rule(item, f"{field}[{i}]")
            if rule is not None:
                out.append(rule)
        return tuple(out)

    def allowed_ips(self, value: Any, field: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.seq(value, field, "allowed_ips")):
            f = f"{field}[{i}]"
            if not isinstance(item, str):
                self.err(f, f"allowed_ips entries must be CIDR strings or IP addresses; got {item!r}")
                continue
            try:
                net = ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                self.err(f, f'"{item}" is not a CIDR range or IP address; accepted e.g. 10.199.0.0/24 or 10.199.0.2')
                continue
            hit = overlapping_blocked(net)
            if hit is not None:
                blocked, why = hit
                self.err(f, f'allowed_ips entry "{item}" overlaps the always-blocked range {blocked} ({why}); no policy can allow it')
                continue
            if item.strip() not in out:
                out.append(item.strip())
        return tuple(out)

    def endpoint(self, value: Any, field: str) -> Endpoint | None:
        ep = self.mapping(value, field, _ENDPOINT_KEYS, "endpoint")
        if ep is None:
            return None
        before = len(self.errors)
        allowed_ips = self.allowed_ips(ep.get("allowed_ips"), f"{field}.allowed_ips")
        host_raw = ep.get("host")
        host = ""
        if host_raw is not None and not isinstance(host_raw, str):
            self.err(f"{field}.host", f"host must be a string; got {host_raw!r}")
        elif host_raw:
            host = normalise_host(host_raw)
            why = pattern_error(host)
            if why:
                self.err(f"{field}.host", why)
        if not host and not ep.get("allowed_ips"):
            self.err(f"{field}.host", "host is required (an empty host is accepted only together with allowed_ips)")
        ports = self.ports(ep, field)
        protocol = self.enum(ep.get("protocol"), f"{field}.protocol", "protocol", D.PROTOCOL_VALUES, "")
        enforcement = self.enum(ep.get("enforcement"), f"{field}.enforcement", "enforcement", D.ENFORCEMENT_VALUES, "enforce")
        access = self.enum(ep.get("access"), f"{field}.access", "access", D.ACCESS_VALUES, "")
        tls = self.enum(ep.get("tls"), f"{field}.tls", "tls", D.TLS_VALUES, "")
        rules = self.allow_rules(ep.get("rules"), f"{field}.rules")
        deny = self.deny_rules(ep.get("deny_rules"), f"{field}.deny_rules")
        if protocol == "rest":
            if tls == "skip":
                self.err(f"{field}.tls", "tls: skip forbids protocol: rest (requests cannot be inspected without TLS termination)")
            if not rules and not access:
                self.err(field, "protocol: rest needs rules or access (read-only | read-write | full); without them every request is denied")
        elif ep.get("protocol") is None:
            # L7 settings on an L4 endpoint would look like a restriction but restrict nothing.
            for key in ("rules", "deny_rules", "access"):
                if ep.get(key):
                    self.err(f"{field}.{key}", f"{key} needs protocol: rest (HTTP inspection); an L4 endpoint cannot apply it")
        if len(self.errors) != before:
            return None
        return Endpoint(
            host=host,
            ports=ports,
            protocol=protocol,
            enforcement=enforcement,
            access=access,
            rules=rules,
            deny_rules=deny,
            allowed_ips=allowed_ips,
            tls=tls,
        )

    def binary(self, value: Any, field: str) -> Binary | None:
        b = self.mapping(value, field, _BINARY_KEYS, "binary")
        if b is None:
            return None
        if "path" not in b:
            self.err(f"{field}.path", "binary needs a path (an absolute path or glob, e.g. /usr/bin/curl)")
            return None
        p = self.path(b["path"], f"{field}.path", "binary path")
        return Binary(p) if p is not None else None

    def network(self, doc: dict) -> tuple[NetworkRule, ...]:
        nps = self.mapping(doc.get("network_policies"), "network_policies", None, "network_policies")
        if nps is None:
            return ()
        out: list[NetworkRule] = []
        placed: list[tuple[str, Endpoint]] = []
        for key, rule in nps.items():
            field = _join("network_policies", str(key))
            if not isinstance(key, str) or not _RULE_KEY_RE.match(key):
                self.err(field, f"rule key {key!r} is invalid; accepted: letters, digits, '_', '.', '-' (up to 128, starting with a letter or digit)")
                continue
            r = self.mapping(rule, field, _RULE_KEYS, "network rule")
            if r is None:
                continue
            name = r.get("name", key)
            if not isinstance(name, str) or not name:
                self.err(f"{field}.name", f"name must be a non-empty string; got {name!r}")
                name = key
            for required in ("endpoints", "binaries"):
                if required not in r:
                    self.err(f"{field}.{required}", f"{required} is required (a list; an empty list matches nothing)")
            endpoints = []
            for i, item in enumerate(self.seq(r.get("endpoints"), f"{field}.endpoints", "endpoints")):
                e = self.endpoint(item, f"{field}.endpoints[{i}]")
                if e is not None:
                    endpoints.append(e)
                    placed.append((f"{field}.endpoints[{i}]", e))
            binaries: list[Binary] = []
            for i, item in enumerate(self.seq(r.get("binaries"), f"{field}.binaries", "binaries")):
                bb = self.binary(item, f"{field}.binaries[{i}]")
                if bb is not None and bb not in binaries:
                    binaries.append(bb)
            out.append(NetworkRule(key=key, name=name, endpoints=tuple(endpoints), binaries=tuple(binaries)))
        self.conflicts(placed)
        return tuple(out)

    def conflicts(self, placed: list[tuple[str, Endpoint]]) -> None:
        """Report endpoints that name the same host and port with different connection settings.

        Which rule matches a connection depends on the connecting binary, but how
        the connection is handled (inspected or not, TLS skipped, audited) must
        not: two rules disagreeing on it are refused, naming both.
        """
        seen: dict[tuple[str, int], tuple[str, Endpoint]] = {}
        for field, ep in placed:
            if not ep.host:
                continue
            for port in ep.ports:
                first = seen.setdefault((ep.host, port), (field, ep))
                if first[1] is ep:
                    continue
                for setting in _CONNECTION_SETTINGS:
                    a, b = getattr(first[1], setting), getattr(ep, setting)
                    if a != b:
                        self.err(
                            field,
                            f"{ep.host}:{port} has {setting} {b or 'unset'!r} here but {a or 'unset'!r} in {first[0]}; "
                            f"an endpoint must have the same protocol, tls and enforcement in every rule",
                        )
                        break


def parse_policy(source: str | bytes | Mapping[str, Any] | None) -> Policy:
    """Validate and normalise one policy document.

    :param source: YAML text/bytes, or the already-loaded mapping. An empty
        document (``None``, ``""``) yields the default policy (POLICY.md §1).
    :returns: the validated :class:`Policy`: hosts lower-cased, ``port`` folded
        into ``ports``, paths normalised, the workdir and the §4 baseline added.
    :raises PolicyError: listing every problem; ``.field`` is the first one's
        path (``network_policies.github.endpoints[0].access``), each message says
        what is accepted. YAML syntax errors name the line (field ``document``).
    """
    if isinstance(source, (str, bytes)):
        from openshell.policy.yamlio import load_document  # here: yaml is ~25 ms of import a JSON caller never needs

        doc = load_document(source)
    else:
        doc = source
    if doc is None:
        doc = {"version": 1}
    w = _Walker()
    top = w.mapping(doc, "", _TOP_KEYS, "policy document")
    if top is None:
        raise PolicyError.from_errors(w.errors)
    version = w.version(top)
    policy = Policy(
        version=version,
        filesystem=w.filesystem(top),
        landlock=w.landlock(top),
        process=w.process(top),
        network=w.network(top),
    )
    if w.errors:
        raise PolicyError.from_errors(w.errors)
    return policy


def default_policy() -> Policy:
    """Return the policy of a sandbox created without one (POLICY.md §1): version 1,
    the §4 baseline with the workdir, ``best_effort`` Landlock, user ``sandbox``,
    no network rules."""
    return parse_policy({"version": 1})
