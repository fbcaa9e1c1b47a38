DELETE FROM alert_instances;
