"""Fills a moto S3 server (started with INITIAL_NO_AUTH_ACTION_COUNT=3, so that it checks
credentials after three requests) for tests/verify.rs.

Usage: python s3_fixture.py ENDPOINT BUCKET KEY=FILE...

Creates an IAM user with an access key allowed everything (the three unauthenticated
requests), then, signed with that key, the bucket and one object per KEY=FILE (an empty
FILE makes an empty object). Prints {"access_key_id": ..., "secret_access_key": ...}.
"""

import json
import sys

import boto3


def main():
    if len(sys.argv) < 3:
        raise SystemExit("usage: s3_fixture.py ENDPOINT BUCKET KEY=FILE...")
    endpoint, bucket, objects = sys.argv[1], sys.argv[2], sys.argv[3:]
    common = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    iam = boto3.client(
        "iam", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap", **common
    )
    iam.create_user(UserName="flink")
    iam.put_user_policy(
        UserName="flink",
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="flink")["AccessKey"]
    s3 = boto3.client(
        "s3",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        **common,
    )
    s3.create_bucket(Bucket=bucket)
    for spec in objects:
        name, path = spec.split("=", 1)
        with open(path, "rb") as body:
            s3.put_object(Bucket=bucket, Key=name, Body=body.read())
    print(
        json.dumps(
            {
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
