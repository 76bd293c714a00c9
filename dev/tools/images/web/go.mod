module image-cri-shim.dev/tools/images/web

go 1.22
