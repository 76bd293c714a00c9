module image-cri-shim.dev/tools/images/pause

go 1.22
