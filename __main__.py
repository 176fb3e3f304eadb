from s3slower.cli import main

main()
