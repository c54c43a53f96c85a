
lonely