"""envoygen: compile Istio ingress-gateway YAML into a static Envoy gateway."""

__version__ = "0.1.0"
