# OpenShell network policy (POLICY.md §2.1-2.4 connections, §3 HTTP requests).
#
# data.netpolicy is prepared by openshell_plugin_opa.compile from a validated
# Policy (an endpoint is named [rule key, index in the rule's endpoints]):
#   has_rules: bool
#   exact_hosts[host][port as text] = [[key, index], ...]
#   wildcard_hosts = [{key, index, host: glob, ports: [int]}, ...]
#   any_host[port as text] = [[key, index], ...]     (empty host + allowed_ips)
#   rule_binaries[key] = {exact: {path: true}, globs: [pattern]}
#                                                     (symlink targets included)
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

# Exact hosts and host-less endpoints are looked up by index (iterating over
# every rule costs tens of µs per rule in regopy); only wildcard hosts are
# iterated.
endpoint_matches contains m if {
	some m in data.netpolicy.exact_hosts[input.host][input.port_key]
}

# `*` stops at ".", `**` crosses it (POLICY.md §2.2).
endpoint_matches contains [e.key, e.index] if {
	some e in data.netpolicy.wildcard_hosts
	input.port in e.ports
	glob.match(e.host, ["."], input.host)
}

# Empty host: any name on those ports; allowed_ips are checked after the engine (§2.5).
endpoint_matches contains m if {
	some m in data.netpolicy.any_host[input.port_key]
}

# A binary of rule `key` matches the process or one of its ancestors (§2.4).
# Only rules with a matching endpoint are asked, so the cost follows the
# endpoints that match, not the size of the policy.
binary_matches(key) if {
	some p in procs
	data.netpolicy.rule_binaries[key].exact[p]
}

binary_matches(key) if {
	some pattern in data.netpolicy.rule_binaries[key].globs
	some p in procs
	glob.match(pattern, ["/"], p)
}

# Endpoint and binary must come from the same rule (§2.1).
allowed contains m if {
	some m in endpoint_matches
	binary_matches(m[0])
}

decision := {
	"has_rules": data.netpolicy.has_rules,
	"endpoint_matches": endpoint_matches,
	"allowed": allowed,
}
