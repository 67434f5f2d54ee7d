"""Cluster DNS (CoreDNS' job): Services and EndpointSlices as DNS records for pods."""
