"""The lab's production-shaped environment (three app hosts, external Redis on cache1)."""

from tasks.inventory import lab_group

app_servers = lab_group("production", "app_servers", ("production", "lab", "lab_production"))
