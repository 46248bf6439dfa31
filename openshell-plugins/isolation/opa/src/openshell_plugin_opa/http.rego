# OpenShell HTTP request rules (POLICY.md §3). See network.rego for the data layout.
package openshell_http

import rego.v1

endpoint := data.netpolicy.http[input.endpoint]

# `*` = any method; HEAD is allowed wherever GET is.
method_ok(r) if "*" in r.methods

method_ok(r) if input.method in r.methods

method_ok(r) if {
	input.method == "HEAD"
	"GET" in r.methods
}

# `*` is one segment, `**` any number of segments.
path_ok(r) if glob.match(r.path, ["/"], input.path)

value_ok(globs, v) if {
	some g in globs
	glob.match(g, null, v)
}

# Allow rules: each listed key present, and all of its values match.
allow_key_ok(m) if {
	vals := object.get(input.query, m.key, [])
	count(vals) > 0
	bad := [v | some v in vals; not value_ok(m.globs, v)]
	count(bad) == 0
}

allow_query_ok(r) if {
	bad := [m | some m in r.query; not allow_key_ok(m)]
	count(bad) == 0
}

# Deny rules: each listed key present with at least one matching value.
deny_key_ok(m) if {
	some v in object.get(input.query, m.key, [])
	value_ok(m.globs, v)
}

deny_query_ok(r) if {
	bad := [m | some m in r.query; not deny_key_ok(m)]
	count(bad) == 0
}

allowed_by contains i if {
	some i, r in endpoint.allow
	method_ok(r)
	path_ok(r)
	allow_query_ok(r)
}

denied_by contains i if {
	some i, r in endpoint.deny
	method_ok(r)
	path_ok(r)
	deny_query_ok(r)
}

decision := {
	"allowed_by": allowed_by,
	"denied_by": denied_by,
}
