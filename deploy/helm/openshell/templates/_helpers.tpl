{{- define "openshell.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "openshell.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "openshell.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "openshell.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selects the gateway pod. */}}
{{- define "openshell.gatewaySelector" -}}
app.kubernetes.io/name: {{ include "openshell.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* Labels the driver puts on every sandbox pod (the NetworkPolicy selects them). */}}
{{- define "openshell.sandboxSelector" -}}
app.kubernetes.io/name: {{ include "openshell.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: sandbox
{{- end -}}

{{- define "openshell.sandboxNamespace" -}}
{{- default .Release.Namespace .Values.sandbox.namespace -}}
{{- end -}}

{{- define "openshell.gatewayServiceAccount" -}}
{{- printf "%s-gateway" (include "openshell.fullname" .) -}}
{{- end -}}

{{- define "openshell.sandboxServiceAccount" -}}
{{- printf "%s-sandbox" (include "openshell.fullname" .) -}}
{{- end -}}

{{- define "openshell.pkiSecret" -}}
{{- default (printf "%s-pki" (include "openshell.fullname" .)) .Values.pki.secretName -}}
{{- end -}}

{{- define "openshell.clientSecret" -}}
{{- default (printf "%s-client" (include "openshell.fullname" .)) .Values.pki.clientSecretName -}}
{{- end -}}

{{- define "openshell.gatewayImage" -}}
{{- printf "%s:%s" .Values.image.gateway.repository (toString .Values.image.gateway.tag) -}}
{{- end -}}

{{- define "openshell.sandboxImage" -}}
{{- printf "%s:%s" .Values.image.sandbox.repository (toString .Values.image.sandbox.tag) -}}
{{- end -}}

{{/* Every name the gateway's server certificate carries. */}}
{{- define "openshell.serverNames" -}}
{{- $f := include "openshell.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- /* the pod's own names too: the gateway re-issues a server certificate missing its host name or FQDN */ -}}
{{- $names := list $f (printf "%s.%s" $f $ns) (printf "%s.%s.svc" $f $ns) (printf "%s.%s.svc.cluster.local" $f $ns) (printf "%s-0" $f) (printf "%s-0.%s-headless.%s.svc" $f $f $ns) (printf "%s-0.%s-headless.%s.svc.cluster.local" $f $f $ns) -}}
{{- concat $names .Values.gateway.extraServerNames | join "," -}}
{{- end -}}
