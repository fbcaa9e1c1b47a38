SELECT metric, labels, value FROM export_counters ORDER BY metric, labels;
