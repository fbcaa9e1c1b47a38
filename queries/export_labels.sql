SELECT kind, name, label FROM export_labels;
