"""Class-folder scene datasets: scanning and decoding, the seeded stratified split, augmentation."""
