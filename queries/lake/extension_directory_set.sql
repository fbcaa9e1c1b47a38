SET GLOBAL extension_directory = ?
