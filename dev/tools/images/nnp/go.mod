module image-cri-shim.dev/tools/images/nnp

go 1.22
