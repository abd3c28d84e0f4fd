//! The image-folder loader and the validation split.
use tinycnn::Arch;
use tinycnn_host::data::{split_indices, DataError, Dataset};
use tinycnn_runtime::images::preprocess_image;
use tinycnn_tests::fixtures::{write_gray, write_rgb};

#[test]
fn loads_png_and_jpeg_and_skips_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exact = write_gray(&root.join("boot/a.png"), 28, 28, 1);
    write_rgb(&root.join("boot/b.JPG"), 40, 30, 2);
    write_rgb(&root.join("coat/c.jpeg"), 64, 64, 3);
    write_gray(&root.join("coat/d.bmp"), 50, 20, 4);
    std::fs::write(root.join("coat/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(root.join("coat/notes.txt"), b"hello").unwrap();
    std::fs::write(root.join("coat/.hidden"), b"ignored").unwrap();

    let arch = Arch::fashion();
    let data = Dataset::load(root, &arch).unwrap();
    assert_eq!(data.list.labels, ["boot", "coat"]);
    assert_eq!(data.len(), 4);
    assert_eq!(data.list.targets, [0, 0, 1, 1]);
    assert_eq!(data.list.arch.classes, 2);
    assert_eq!(data.pixels.len(), 4 * arch.input_len());
    let skipped: Vec<_> = data
        .list
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(skipped, ["broken.png", "notes.txt"]);

    // A gray image already at the model's size passes through preprocessing unchanged.
    assert_eq!(data.image(0), exact.as_slice());
    // Every other image is exactly what the shared preprocessing makes of it.
    for (i, path) in data.list.paths.iter().enumerate() {
        let decoded = image::open(path).unwrap();
        assert_eq!(
            data.image(i),
            preprocess_image(&decoded, &data.list.arch)
                .unwrap()
                .as_slice(),
            "{}",
            path.display()
        );
    }
    // RGB input for a 3-channel model keeps its colour.
    let rgb = Dataset::load(
        root,
        &Arch {
            height: 16,
            width: 16,
            channels: 3,
            ..arch
        },
    )
    .unwrap();
    assert_eq!(rgb.image(1).len(), 16 * 16 * 3);
    assert!(rgb.image(1).chunks(3).any(|p| p[0] != p[1] || p[1] != p[2]));
}

#[test]
fn rejects_bad_layouts_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let arch = Arch::fashion();
    let missing = dir.path().join("nope");
    let e = Dataset::load(&missing, &arch).unwrap_err();
    assert!(matches!(e, DataError::MissingRoot(_)), "{e}");
    assert!(e.to_string().contains("does not exist"));

    let one = dir.path().join("one");
    write_gray(&one.join("only/a.png"), 28, 28, 0);
    let e = Dataset::load(&one, &arch).unwrap_err();
    assert!(
        matches!(e, DataError::TooFewClasses { found: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("at least 2"));

    let empty = dir.path().join("empty");
    write_gray(&empty.join("a/x.png"), 28, 28, 0);
    std::fs::create_dir_all(empty.join("b")).unwrap();
    std::fs::write(empty.join("b/bad.jpg"), b"garbage").unwrap();
    let e = Dataset::load(&empty, &arch).unwrap_err();
    assert!(
        matches!(e, DataError::EmptyClass(ref p) if p.ends_with("b")),
        "{e}"
    );
    assert!(e.to_string().contains("no usable images"));

    let two = dir.path().join("two");
    write_gray(&two.join("a/x.png"), 28, 28, 0);
    write_gray(&two.join("c/x.png"), 28, 28, 0);
    let e = Dataset::load_for_model(&two, &arch, &["a".into(), "b".into()]).unwrap_err();
    assert!(matches!(e, DataError::ClassMismatch { .. }), "{e}");
    assert!(e.to_string().contains("trained on"));
}

#[test]
fn split_is_reproducible_disjoint_and_complete() {
    let (train, val) = split_indices(1000, 0.2, 7);
    assert_eq!((train.len(), val.len()), (800, 200));
    assert_eq!(split_indices(1000, 0.2, 7), (train.clone(), val.clone()));
    assert_ne!(split_indices(1000, 0.2, 8).1, val);
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    // Not just a prefix: the validation images are spread over the data set.
    assert!(val.iter().any(|&i| i >= 800) && val.iter().any(|&i| i < 200));
}
