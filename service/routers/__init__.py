"""Thin HTTP routers: parse, call a service, return its model."""
