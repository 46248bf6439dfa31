# OpenShell network policy (POLICY.md §2.1-2.4 connections, §3 HTTP requests).
#
# data.netpolicy is prepared by openshell_plugin_opa.compile from a validated
# Policy:
#   rules[key] = {endpoints: [{host, kind: exact|wildcard|any, ports: [int]}],
#                 exact_bins: {path: true}, glob_bins: [pattern]}
#   http[endpoint_id] = {allow: [rule], deny: [rule]}
#     rule = {methods: [METHOD | "*"], path: glob, query: [{key, globs: [glob]}]}
#
# The module computes which rules match; the Python side picks the smallest
# key and words the reason. Notes for regopy 1.5.2: nested `every` and
# two-variable `some k, v in` inside comprehensions do not evaluate, so this
# module uses helper rules and "count of failures == 0" instead.
package openshell_network

import rego.v1

procs := array.concat([input.binary], input.ancestors)

host_matches(ep) if {
	ep.kind == "exact"
	ep.host == input.host
}

# `*` stops at ".", `**` crosses it (POLICY.md §2.2).
host_matches(ep) if {
	ep.kind == "wildcard"
	glob.match(ep.host, ["."], input.host)
}

# Empty host: any name; allowed_ips are checked after the engine (§2.5).
host_matches(ep) if ep.kind == "any"

# [key, endpoint index] of every endpoint matching host and port.
endpoint_matches contains [key, i] if {
	some key, rule in data.netpolicy.rules
	some i, ep in rule.endpoints
	input.port in ep.ports
	host_matches(ep)
}

# Keys of rules with a binary matching the process or one of its ancestors (§2.4).
binary_matches contains key if {
	some key, rule in data.netpolicy.rules
	some p in procs
	rule.exact_bins[p]
}

binary_matches contains key if {
	some key, rule in data.netpolicy.rules
	some pattern in rule.glob_bins
	some p in procs
	glob.match(pattern, ["/"], p)
}

# Endpoint and binary must come from the same rule (§2.1).
allowed contains m if {
	some m in endpoint_matches
	binary_matches[m[0]]
}

decision := {
	"has_rules": count(data.netpolicy.rules) > 0,
	"endpoint_matches": endpoint_matches,
	"allowed": allowed,
}
