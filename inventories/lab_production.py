"""The lab's production-shaped environment: app1..appN (`python -m lab up production
--app-hosts N`, default 3), external Redis on cache1, and lb1, the HAProxy in front of them."""

from tasks.inventory import lab_group

app_servers = lab_group("production", "app_servers", ("production", "lab", "lab_production"))
lb_servers = lab_group("production", "lb_servers", ("production", "lab", "lab_production"))
