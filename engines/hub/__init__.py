"""The Hugging Face Hub beyond the curated catalog: search it, list a repo's model files, and read each file's
real header remotely (HTTP Range) to say exactly whether it fits here before anything is downloaded."""
